"""figspec's safetensors reader against the format's reference, the
`safetensors` library: a few hundred seeded files, valid and mutated (the
header's length off, padding, bytes before, between or after the tensors, a
BOM, UTF-16, lone surrogates, metadata of every type, dtypes unknown or not
strings, offsets with holes, overlaps or out of range, shapes negative or
huge, truncated files...), and for each the same verdict: both read it, or
both refuse it. Where both read it, figspec finds the same tensors, dtypes,
shapes and bytes, and the values it sums are the reference's."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import checkpoints as ck
from figspec.sources import reduce
from figspec.sources.safetensors import CheckpointError, open_checkpoint
from figspec.sources.shard_data import Files

safetensors = pytest.importorskip("safetensors")

#: Bytes per entry of the dtypes the files hold (a few the reference knows
#: that figspec does not read, which a header may still hold).
WIDTH = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8,
         "BOOL": 1, "U8": 1, "I32": 4}
READ = ("BF16", "F16", "F32", "F64", "F8_E4M3", "F8_E5M2")
SEEDS = 400


# -- files ------------------------------------------------------------------------

def tensors_of(rng: random.Random) -> list[tuple[str, str, list[int]]]:
    """Names, dtypes and shapes of a small checkpoint (zero-size and scalar
    tensors among them)."""
    out = []
    for i in range(rng.randint(0, 4)):
        shape = rng.choice([[2, 3], [4], [], [0, 3], [1, 1, 2], [5]])
        out.append((f"model.layers.{i}.mlp.up_proj.weight", rng.choice(list(WIDTH)), shape))
    return out


def entry_bytes(rng: random.Random, dtype: str, count: int) -> bytes:
    """Finite values mostly; the odd NaN or infinity where the dtype has them."""
    if dtype in ("F32", "F64", "F16"):
        values = np.array([rng.choice([rng.gauss(0, 1), 0.0, -0.0, 1e-3, math.inf, math.nan])
                           if rng.random() < 0.1 else rng.gauss(0, 1) for _ in range(count)])
        return ck.encode(values, dtype)
    if dtype == "BF16":
        return ck.encode(np.array([rng.gauss(0, 1) for _ in range(count)]), dtype)
    return bytes(rng.randrange(256) for _ in range(count * WIDTH[dtype]))


def layout(rng: random.Random) -> tuple[dict[str, Any], bytes]:
    """A valid header (as a dict) and its tensors' bytes."""
    header: dict[str, Any] = {}
    if rng.random() < 0.3:
        header["__metadata__"] = {"format": "pt"}
    body = b""
    for name, dtype, shape in tensors_of(rng):
        raw = entry_bytes(rng, dtype, math.prod(shape))
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    return header, body


def framed(text: bytes, body: bytes, length: int | None = None) -> bytes:
    return (len(text) if length is None else length).to_bytes(8, "little") + text + body


def tensor_names(header: dict[str, Any]) -> list[str]:
    return [k for k in header if k != "__metadata__"]


# Each mutation: (rng, header, body) -> the file's bytes.
Mutation = Callable[[random.Random, dict[str, Any], bytes], bytes]


def _length_off(rng, header, body):
    text = json.dumps(header).encode()
    return framed(text, body, max(0, len(text) + rng.choice([-8, -3, -1, 1, 2, 8, 1 << 40])))


def _padded(rng, header, body):
    text = json.dumps(header).encode() + rng.choice([b" ", b"   ", b"\t\n\r ", b"\x00",
                                                     b"\x0c", b" \x00"])
    return framed(text, body)


def _leading(rng, header, body):
    return framed(rng.choice([b" ", b"\n", b"\x0b", b"\xef\xbb\xbf"]) +
                  json.dumps(header).encode(), body)


def _utf16(rng, header, body):
    return framed(json.dumps(header).encode(rng.choice(["utf-16", "utf-16-le", "utf-16-be"])),
                  body)


def _extra_bytes(rng, header, body):
    """Bytes before, between or after the tensors, with or without offsets to match."""
    names, k = tensor_names(header), rng.randint(1, 8)
    where = rng.choice(["before", "between", "after"])
    if where == "after" or not names:
        return framed(json.dumps(header).encode(), body + b"\x00" * k)
    i = 0 if where == "before" else rng.randrange(len(names))
    cut = header[names[i]]["data_offsets"][0]
    if rng.random() < 0.5:  # offsets moved with the bytes: a hole, not a shift
        for name in names[i:]:
            header[name]["data_offsets"] = [o + k for o in header[name]["data_offsets"]]
    return framed(json.dumps(header).encode(), body[:cut] + b"\x00" * k + body[cut:])


def _truncated(rng, header, body):
    raw = framed(json.dumps(header).encode(), body)
    return raw[:rng.randrange(len(raw))]


def _surrogate(rng, header, body):
    text = json.dumps(header)
    escape = rng.choice(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\ud800\\u0041", "\\udc00\\ud800"])
    if rng.random() < 0.5 or not tensor_names(header):
        text = text[:-1] + (", " if len(text) > 2 else "") + \
            f'"__metadata__": {{"note": "a{escape}"}}' + "}"
    else:
        text = text.replace('"model.', f'"{escape}model.', 1)
    return framed(text.encode(), body)


def _metadata(rng, header, body):
    header.pop("__metadata__", None)
    value = rng.choice(['{"a": "b"}', "null", '{"a": 1}', "[]", '"x"', '{"a": {"b": "c"}}',
                        '{"a": null}', '{"a": "1", "a": "2"}', "{}", '{"a": ["b"]}', "3"])
    text = json.dumps(header)
    twice = ', "__metadata__": {}' if rng.random() < 0.1 else ""
    text = '{"__metadata__": ' + value + twice + (", " + text[1:] if len(text) > 2 else "}")
    return framed(text.encode(), body)


def _dtype(rng, header, body):
    names = tensor_names(header)
    if not names:
        return framed(json.dumps(header).encode(), body)
    info = header[rng.choice(names)]
    info["dtype"] = rng.choice([["F32"], "f32", "F128", None, 4, {info["dtype"]: None},
                                {"F32": 1}, {}, "F8_E4M3FNUZ", "C64", "F4", "U16",
                                {"F16": None, "F32": None}])
    return framed(json.dumps(header).encode(), body)


def _offsets(rng, header, body):
    names = tensor_names(header)
    if not names:
        return framed(json.dumps(header).encode(), body)
    info = header[rng.choice(names)]
    s, e = info["data_offsets"]
    info["data_offsets"] = rng.choice([[s + 1, e + 1], [s - 1, e - 1], [e, s], [s, e, e],
                                       [s], [s, e + 4], [0, e - s], [s, e + 1 << 64],
                                       [s + 10 ** 9, e + 10 ** 9], [float(s), e], [str(s), e],
                                       [-1, e], [s, e - 1]])
    return framed(json.dumps(header).encode(), body)


def _shape(rng, header, body):
    names = tensor_names(header)
    if not names:
        return framed(json.dumps(header).encode(), body)
    info = header[rng.choice(names)]
    info["shape"] = rng.choice([[-1], [1 << 32, 1 << 32, 0], [0, 1 << 32, 1 << 32],
                                [1 << 64], [(1 << 64) - 1, 0], [2.0], [True], "3", None,
                                info["shape"] + [1], info["shape"] + [0], [3, -0]])
    return framed(json.dumps(header).encode(), body)


def _json_quirks(rng, header, body):
    """What serde_json and Python's json read differently."""
    names = tensor_names(header)
    if not names:
        return framed(b"{" + b" " * rng.randint(0, 2) + b"}", body)
    name = rng.choice(names)
    extra = rng.choice(["NaN", "Infinity", "1e400", "-1e400", "1e308", "1" + "0" * 400,
                        "1" + "0" * 300, "-0", "1.5", "[" * 125 + "]" * 125,
                        "[" * 126 + "]" * 126, '"\\x"', '"\\u00e9"', "true"])
    text = json.dumps(header)
    entry = json.dumps(header[name])
    if rng.random() < 0.3:  # the same field twice, or the entry as a list
        twice = entry[:-1] + ', "dtype": "F32"}' if rng.random() < 0.5 else \
            json.dumps([header[name]["dtype"], header[name]["shape"],
                        header[name]["data_offsets"]])
        return framed(text.replace(entry, twice, 1).encode(), body)
    return framed(text.replace(entry, entry[:-1] + f', "x": {extra}}}', 1).encode(), body)


def _duplicate(rng, header, body):
    """A tensor's name twice: the reference takes the last."""
    names = tensor_names(header)
    if not names:
        return framed(json.dumps(header).encode(), body)
    name = rng.choice(names)
    first = dict(header[name], shape=rng.choice([[1], header[name]["shape"]]))
    text = json.dumps(header)
    return framed(("{" + json.dumps(name) + ": " + json.dumps(first) + ", " + text[1:]).encode(),
                  body)


def _flip(rng, header, body):
    """A byte of the header changed at random."""
    text = bytearray(json.dumps(header).encode())
    for _ in range(rng.randint(1, 3)):
        text[rng.randrange(len(text))] = rng.choice([rng.randrange(256), ord(" "), ord("0"),
                                                     ord(","), ord('"'), ord("}")])
    return framed(bytes(text), body)


def _valid(rng, header, body):
    return framed(json.dumps(header).encode(), body)


def _tiny(rng, header, body):
    return rng.choice([b"", b"\x00" * 7, b"\x02" + b"\x00" * 7 + b"{}", (1 << 63).to_bytes(8, "little")
                       + b"{}", (100_000_001).to_bytes(8, "little") + b"{}"])


MUTATIONS: list[Mutation] = [_valid, _valid, _length_off, _padded, _leading, _utf16, _extra_bytes,
                             _truncated, _surrogate, _metadata, _dtype, _offsets, _shape,
                             _json_quirks, _duplicate, _flip, _flip, _tiny]


def mutated(seed: int) -> bytes:
    rng = random.Random(seed)
    header, body = layout(rng)
    return MUTATIONS[seed % len(MUTATIONS)](rng, header, body)


# -- the verdicts ------------------------------------------------------------------

def reference(path: Path) -> dict[str, tuple[str, list[int], bytes]] | str:
    """The reference's tensors (dtype, shape, bytes), or why it refuses the file."""
    try:
        with safetensors.safe_open(str(path), framework="np"):
            pass
        entries = safetensors.deserialize(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - the reference's own error types
        return str(e)
    return {name: (v["dtype"], list(v["shape"]), bytes(v["data"])) for name, v in entries}


def figspec(path: Path) -> Any:
    try:
        return open_checkpoint(path)
    except CheckpointError as e:
        return e.text()


def values(raw: bytes, dtype: str) -> np.ndarray:
    """The stored values as float64, decoded independently of figspec."""
    return ck.decode(raw, dtype, (len(raw) // WIDTH[dtype],))


def test_figspec_reads_exactly_the_files_the_reference_reads(tmp_path: Path):
    disagree, both_read = [], 0
    files = Files()
    try:
        for seed in range(SEEDS):
            path = tmp_path / f"{seed}.safetensors"
            path.write_bytes(mutated(seed))
            want, got = reference(path), figspec(path)
            if isinstance(want, str) or isinstance(got, str):
                if isinstance(want, str) != isinstance(got, str):
                    disagree.append((seed, MUTATIONS[seed % len(MUTATIONS)].__name__, want,
                                     got))
                continue
            both_read += 1
            assert {n: (t.dtype, list(t.shape)) for n, t in got.items()} == \
                {n: w[:2] for n, w in want.items()}, seed
            for name, t in got.items():
                raw = want[name][2]
                if t.dtype in READ and t.count:
                    assert files.read(t, 0, t.count) == raw, (seed, name)
                    same_sums(t, files, values(raw, t.dtype), seed)
    finally:
        files.close()
    assert not disagree, "\n".join(map(repr, disagree[:10]))
    assert both_read > SEEDS // 5  # the valid files are not all mutated away


def same_sums(t: Any, files: Files, want: np.ndarray, seed: int) -> None:
    """The sums figspec makes of the values it reads are those of the reference's."""
    sums = reduce.reduce_pair(t, None, files, frozenset(), path="numpy")
    finite = np.isfinite(want)
    assert sums["bad_t"] == np.count_nonzero(~finite), seed
    if finite.all():
        assert sums["max_abs"] == np.max(np.abs(want)), seed
        assert sums["tt"] == pytest.approx(float(np.sum(want * want)), rel=1e-12, abs=0), seed


# -- each cause of refusal, with its reason -------------------------------------------

T = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize("raw,reason", [
    (framed(json.dumps(T).encode(), b"\x00" * 8, 55), "is its length (55 bytes"),
    (framed(json.dumps(T).encode(), b"\x00" * 8, 50), "is its length (50 bytes"),
    (framed(b"\xef\xbb\xbf" + json.dumps(T).encode(), b"\x00" * 8), "byte order mark"),
    (framed(json.dumps(T).encode("utf-16"), b"\x00" * 8), "it is UTF-16"),
    (framed(json.dumps(T).encode(), b"\x00" * 9), "1 bytes after the last tensor"),
    (framed(b'{"a\\ud800": ' + json.dumps(T["a"]).encode() + b"}", b"\x00" * 8),
     "a lone surrogate escape"),
    (framed(b'{"__metadata__": {"a": 1}, "a": ' + json.dumps(T["a"]).encode() + b"}",
            b"\x00" * 8), "`__metadata__` gives `a` 1, not a string"),
    (framed(json.dumps({"a": dict(T["a"], dtype=["F32"])}).encode(), b"\x00" * 8),
     "dtype [\"F32\"] is not the name of a safetensors dtype"),
    (framed(json.dumps({"a": dict(T["a"], data_offsets=[4, 12])}).encode(), b"\x00" * 12),
     "bytes 70 to 74 before it belong to no tensor"),
    (framed(json.dumps({"a": dict(T["a"], extra=math.inf)}).encode(), b"\x00" * 8),
     "Infinity is not JSON"),
], ids=["length+1", "length-5", "bom", "utf16", "after", "surrogate", "metadata", "dtype-list",
        "before", "infinity"])
def test_each_refusal_says_why(tmp_path: Path, raw: bytes, reason: str):
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw)
    assert isinstance(reference(path), str)
    with pytest.raises(CheckpointError) as e:
        open_checkpoint(path)
    assert reason in e.value.text() and "model.safetensors" in e.value.text()
