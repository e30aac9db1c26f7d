"""The fused checkpoint kernel: every sum against an exact reference (fractions)
for every stored dtype and its special values, the C, numba and numpy paths
giving the same bits, chunk boundaries, and results that do not depend on the
number of threads; where its compiled code is cached, and that `check`,
`status` and a no-op build never load numba."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from array import array
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import checkpoints as ck
import support
from figspec.sources import _kernel_c, kernel, reduce
from figspec.sources.safetensors import open_checkpoint

REPO = Path(__file__).resolve().parent.parent
#: Looked up without importing numba: the first import compiles into the
#: cache folder of that moment, which must be a test's own.
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
#: Found without compiling (the C kernel is compiled on first use, into the
#: cache folder of that moment: a test's own).
HAVE_CC = _kernel_c.compiler() is not None
COMPILED = (["numba"] if HAVE_NUMBA else []) + (["c"] if HAVE_CC else [])
PATHS = ["numpy", *COMPILED]
FIELDS = {name: k for k, name in enumerate(kernel.FIELDS)}
OPTIONS = (("abs", 0.25), ("exact", 0.0), ("rel", 0.5))
FP8 = ("F8_E4M3", "F8_E5M2")
#: Each test's cache holds the kernels compiled once per session: a test here
#: may be the first in its process to take the numba path, which compiled it
#: from nothing (30-40 s a worker). The tests of compiling and caching run
#: children with caches of their own, cold.
pytestmark = pytest.mark.usefixtures("compiled_kernel")


# -- values ---------------------------------------------------------------------------

def bits_of(dtype: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Stored entries across the whole exponent range of ``dtype``, finite
    (subnormals and zeros of both signs included), as their bytes' integers."""
    if dtype in ("BF16", "F16"):
        bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
        top = 0x7F80 if dtype == "BF16" else 0x7C00  # exponent all ones: inf, NaN
        bits[(bits & top) == top] &= ~np.uint16(0x4000)  # halve the exponent instead
        return bits
    if dtype in FP8:
        return finite_fp8(rng.integers(0, 256, n, dtype=np.uint16).astype(np.uint8), dtype)
    if dtype == "F32":
        bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
        return np.where((bits & 0x7F800000) == 0x7F800000, bits & ~np.uint32(1 << 30), bits)
    # F64: exponents within 1e+-150, so that a square is still a float64
    exps = rng.integers(1023 - 500, 1023 + 500, n, dtype=np.uint64)
    mant = rng.integers(0, 1 << 52, n, dtype=np.uint64)
    sign = rng.integers(0, 2, n, dtype=np.uint64)
    return (sign << np.uint64(63)) | (exps << np.uint64(52)) | mant


def finite_fp8(bits: np.ndarray, dtype: str) -> np.ndarray:
    """Every byte but NaN (and E5M2's infinities): the exponent halved there."""
    top = 0x78 if dtype == "F8_E4M3" else 0x7C
    full = (bits & 0x7F) == 0x7F if dtype == "F8_E4M3" else (bits & top) == top
    return np.where(full, bits & np.uint8(0xBF), bits).astype(np.uint8)


WIDTH = {"BF16": "<u2", "F16": "<u2", "F32": "<u4", "F64": "<u8", "F8_E4M3": "u1",
         "F8_E5M2": "u1"}


def as_bytes(bits: np.ndarray, dtype: str) -> bytes:
    return bits.astype(WIDTH[dtype]).tobytes()


def exact(raw: bytes, dtype: str) -> list[float]:
    return ck.decode(raw, dtype, (len(raw) // np.dtype(WIDTH[dtype]).itemsize,)).tolist()


def fsum_products(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """sum(x * y) exactly (rounded once), and sum |x * y| for the error bound."""
    total = sum((Fraction(x) * Fraction(y) for x, y in zip(xs, ys)), Fraction(0))
    return float(total), math.fsum(abs(x * y) for x, y in zip(xs, ys))


def close(got: float, want: float, scale: float) -> bool:
    return abs(got - want) <= 1e-12 * scale


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32", "F64", *FP8])
def test_every_sum_matches_an_exact_reference(dtype: str, path: str):
    rng = np.random.default_rng(1)
    n = 5000
    b_bits = bits_of(dtype, rng, n)
    t_bits = b_bits.copy()
    moved = rng.random(n) < 0.5  # half the entries changed a little, some a lot
    t_bits[moved] ^= rng.integers(1, 64, int(moved.sum())).astype(t_bits.dtype)
    if dtype in FP8:
        t_bits = finite_fp8(t_bits, dtype)
    t_raw, b_raw = as_bytes(t_bits, dtype), as_bytes(b_bits, dtype)
    t, b = exact(t_raw, dtype), exact(b_raw, dtype)
    got = kernel.pair(bytearray(t_raw), dtype, bytearray(b_raw), dtype, OPTIONS, path)
    d = [Fraction(x) - Fraction(y) for x, y in zip(t, b)]
    for name, (want, scale) in {
        "tt": fsum_products(t, t), "bb": fsum_products(b, b), "tb": fsum_products(t, b),
        "dd": (float(sum((x * x for x in d), Fraction(0))), float(sum(x * x for x in d))),
    }.items():
        assert close(got[FIELDS[name]], want, scale), (name, got[FIELDS[name]], want)
    assert got[FIELDS["max_abs"]] == max(abs(x) for x in t)
    assert got[FIELDS["bad_t"]] == got[FIELDS["bad_b"]] == 0
    counts = got[len(FIELDS):]
    # abs: |T - B| > 0.25; exact: bits differ; rel: |T - B| > 0.5 max(|T|, |B|)
    assert counts[0] == sum(abs(x) > Fraction(1, 4) for x in d)
    assert counts[1] == int(np.count_nonzero(t_bits != b_bits))
    assert counts[2] == sum(abs(x) > Fraction(1, 2) * max(abs(Fraction(p)), abs(Fraction(q)))
                            for x, p, q in zip(d, t, b))
    alone = kernel.single(bytearray(t_raw), dtype, path)
    assert alone[FIELDS["tt"]] == got[FIELDS["tt"]] and \
        alone[FIELDS["max_abs"]] == got[FIELDS["max_abs"]]


SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0, 0.5, 2.0, 3.0]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32", "F64"])
def test_special_values_as_numpy_compares_them(dtype: str, path: str):
    """NaN, infinities, zeros of both signs and differences sitting exactly on
    a tolerance: counted as reduce_pair always counted them (numpy's
    comparisons: false with NaN; > is strict)."""
    pairs = [(x, y) for x in SPECIAL for y in SPECIAL]
    t = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    t_raw, b_raw = ck.encode(t, dtype), ck.encode(b, dtype)
    tv, bv = np.array(exact(t_raw, dtype)), np.array(exact(b_raw, dtype))
    options = (("abs", 1.0), ("exact", 0.0), ("rel", 0.5))
    got = kernel.pair(bytearray(t_raw), dtype, bytearray(b_raw), dtype, options, path)
    with np.errstate(all="ignore"):
        d = tv - bv
        want = [np.count_nonzero(np.abs(d) > 1.0),  # 2 - 1 and 3 - 2 are on it: not counted
                np.count_nonzero(np.frombuffer(t_raw, WIDTH[dtype]) !=
                                 np.frombuffer(b_raw, WIDTH[dtype])),  # -0 and 0 differ
                np.count_nonzero(np.abs(d) > 0.5 * np.maximum(np.abs(tv), np.abs(bv)))]
    assert list(got[len(FIELDS):]) == want
    assert got[FIELDS["bad_t"]] == got[FIELDS["bad_b"]] == 30  # 3 of 10 values, 10 times
    assert got[FIELDS["max_abs"]] == math.inf  # NaN never is the largest
    assert math.isnan(got[FIELDS["tt"]])
    # Values of another dtype compare as values: -0 == 0, NaN != NaN.
    other = "F64" if dtype != "F64" else "F32"
    b_other = ck.encode(bv, other)
    got = kernel.pair(bytearray(t_raw), dtype, bytearray(b_other), other, (("exact", 0.0),),
                      path)
    assert got[len(FIELDS)] == np.count_nonzero(tv != bv)


@pytest.mark.skipif(not COMPILED, reason="neither numba nor a C compiler")
@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32", "F64", *FP8])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 2047, 2048, 2049, 100_003])
def test_the_compiled_paths_and_numpy_give_the_same_bits(dtype: str, n: int):
    rng = np.random.default_rng(n)
    b_bits = bits_of(dtype, rng, n)
    t_bits = b_bits ^ rng.integers(0, 4, n).astype(b_bits.dtype)
    t_raw, b_raw = bytearray(as_bytes(t_bits, dtype)), bytearray(as_bytes(b_bits, dtype))
    want = kernel.pair(t_raw, dtype, b_raw, dtype, OPTIONS, "numpy").tobytes()
    alone = kernel.single(t_raw, dtype, "numpy").tobytes()
    for path in COMPILED:
        assert kernel.pair(t_raw, dtype, b_raw, dtype, OPTIONS, path).tobytes() == want, path
        assert kernel.single(t_raw, dtype, path).tobytes() == alone, path


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
@pytest.mark.parametrize(("t_dtype", "b_dtype"), [("BF16", "BF16"), ("F16", "F16"),
                                                  ("F32", "F32"), ("F32", "BF16"),
                                                  ("F64", "F8_E4M3")])
@pytest.mark.parametrize("options", [(), OPTIONS[:1], OPTIONS])
@pytest.mark.parametrize("scale", [1.0, 2.0 ** -reduce.SCALE])
def test_one_call_over_many_chunks_gives_a_call_per_chunk_s_bits(
        t_dtype: str, b_dtype: str, options: tuple, scale: float):
    """kernel.pair_chunks (reduce's call per window of the files) gives the
    bits of kernel.pair called chunk by chunk, each chunk's sums added in
    chunk order as reduce adds them (the largest |T - B| kept unless a later
    chunk's is greater), the last chunk short; with entries that are not
    finite among them."""
    n, chunk = 5 * 1000 + 17, 1000
    rng = np.random.default_rng(7)
    t_bits, b_bits = bits_of(t_dtype, rng, n), bits_of(b_dtype, rng, n)
    if t_dtype == "BF16":
        t_bits[[10, 2500]] = [0x7FC0, 0x7F80]  # NaN, inf: counted, and summed as numpy does
    t_raw, b_raw = bytearray(as_bytes(t_bits, t_dtype)), bytearray(as_bytes(b_bits, b_dtype))
    tw, bw = len(t_raw) // n, len(b_raw) // n
    want = [0.0] * (len(FIELDS) + len(options))
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        part = kernel.pair(t_raw[lo * tw:hi * tw], t_dtype, b_raw[lo * bw:hi * bw], b_dtype,
                           options, "c", scale)
        want = [max(w, p) if k == FIELDS["max_abs"] else w + p
                for k, (w, p) in enumerate(zip(want, part))]
    acc = array("d", [0.0] * len(want))
    kernel.pair_chunks(t_raw, t_dtype, b_raw, b_dtype, options, scale, chunk, acc)
    assert acc.tobytes() == array("d", want).tobytes()


def test_every_f16_bit_pattern_is_read_exactly():
    """All 65,536, NaN and infinities too, as numpy's float16 gives them
    (sign included; a NaN's payload is not a value)."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    want = bits.view(np.float16).astype(np.float64)
    got = np.array(kernel.decoded(bits, "F16"))
    assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", FP8)
def test_every_fp8_byte_is_read_exactly(dtype: str, path: str):
    """All 256 bytes, NaN and infinities too, against the formats' definitions;
    a value's square and products are exact in float64."""
    raw = bytes(range(256))
    want = [ck.fp8(b, dtype) for b in raw]
    got = kernel.decoded(np.frombuffer(raw, "u1"), dtype).tolist()
    assert [math.copysign(1, x) for x in got] == [math.copysign(1, x) for x in want]
    assert [x if x == x else "nan" for x in got] == [x if x == x else "nan" for x in want]
    finite = bytes(b for b, v in zip(raw, want) if math.isfinite(v))
    alone = kernel.single(bytearray(finite), dtype, path)
    values = [ck.fp8(b, dtype) for b in finite]
    assert alone[FIELDS["tt"]] == float(sum(Fraction(v) ** 2 for v in values))
    assert alone[FIELDS["max_abs"]] == max(map(abs, values))
    assert kernel.single(bytearray(raw), dtype, path)[FIELDS["bad_t"]] == \
        sum(not math.isfinite(v) for v in want)


#: The sums of BF16, F16, F32 and F64 chunks (both paths) as figspec gave them
#: before FP8 and scaled sums came: bit for bit the same since.
DIGEST = "a8445cb9ac102f906de1b61d8bf8f39cbf3e42c2572c8249bf75f7efcac6a7e3"


@pytest.mark.parametrize("path", PATHS)
def test_the_sums_of_the_dtypes_read_before_keep_their_bits(path: str):
    import hashlib

    h = hashlib.sha256()
    for dtype in ("BF16", "F16", "F32", "F64"):
        for n in (1, 65, 2049, 40_000):
            rng = np.random.default_rng(n)
            b = bits_of(dtype, rng, n)
            t = b ^ rng.integers(0, 1 << 6, n).astype(b.dtype)
            t_raw, b_raw = bytearray(as_bytes(t, dtype)), bytearray(as_bytes(b, dtype))
            h.update(kernel.pair(t_raw, dtype, b_raw, dtype, OPTIONS, path).tobytes())
            h.update(kernel.single(t_raw, dtype, path).tobytes())
    assert h.hexdigest() == DIGEST


# -- through the reduction: chunks and threads ----------------------------------------

def pair_of_sizes(folder: Path, sizes: list[int], dtype: str = "BF16") -> dict:
    """A pair with one q_proj per layer, of ``sizes[layer]`` entries (1 x n)."""
    rng = np.random.default_rng(3)
    stored: dict[str, dict[str, bytes]] = {"base": {}, "tuned": {}}
    for side in ("base", "tuned"):
        tensors = {}
        for layer, n in enumerate(sizes):
            name = f"model.layers.{layer}.self_attn.q_proj.weight"
            if side == "base":
                values = rng.normal(0, 0.02, n)
            else:
                base = ck.decode(stored["base"][name], dtype, (n,))
                values = base + (rng.random(n) < 0.1) * rng.normal(0, 1e-3, n)
            stored[side][name] = ck.encode(values, dtype)
            tensors[name] = (dtype, (1, n), stored[side][name])
        ck.write_safetensors(folder / side / "model.safetensors", tensors)
    return stored


#: Tensors of a chunk and its neighbours, several chunks, and more chunks than
#: the C kernel takes in one call (a window's: 8 of BF16, 4 of F32).
SIZES = [reduce.CHUNK - 1, reduce.CHUNK, reduce.CHUNK + 1, 2 * reduce.CHUNK + 3,
         9 * reduce.CHUNK + 5, 5, 1]


def reduced(project: Path, threads: int) -> dict:
    tuned = open_checkpoint(project / "ckpt" / "tuned")
    base = open_checkpoint(project / "ckpt" / "base")
    return reduce.reduce_all(tuned, base, frozenset(OPTIONS), set(), threads)


def test_chunk_boundaries_match_the_reference(project: Path, run):
    stored = pair_of_sizes(project / "ckpt", SIZES)
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: relative_change}\n"
        f"modules: [q_proj]\nlayers: {{last: {len(SIZES) - 1}}}\n"))
    code, out, err = run("table", "specs/fig.yaml")
    assert code == 0, err
    got = {int(line.split(",")[0]): float(line.split(",")[-1])
           for line in out.splitlines()[1:]}
    for layer, n in enumerate(SIZES):
        name = f"model.layers.{layer}.self_attn.q_proj.weight"
        t = ck.decode(stored["tuned"][name], "BF16", (n,))
        b = ck.decode(stored["base"][name], "BF16", (n,))
        want = math.sqrt(math.fsum((t - b) ** 2)) / math.sqrt(math.fsum(b * b))
        assert got[layer] == pytest.approx(want, rel=1e-12), layer


def test_the_same_sums_whatever_the_threads(project: Path):
    pair_of_sizes(project / "ckpt", SIZES)
    one = reduced(project, 1)
    assert reduced(project, 2) == one and reduced(project, 3) == one
    assert one["model.layers.3.self_attn.q_proj.weight"]["n"] == SIZES[3]


@pytest.mark.skipif(not COMPILED, reason="neither numba nor a C compiler")
def test_fig_kernel_numpy_gives_the_same_figures(project: Path, run, compiled_kernel):
    """FIGSPEC_KERNEL=c, numba or numpy (read at each reduction) takes that
    path: the same table, byte for byte."""
    pair_of_sizes(project / "ckpt", SIZES[-3:], dtype="F32")
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: cosine}\n"
        "modules: [q_proj]\nlayers: {last: 2}\n"))
    tables = []
    for path in PATHS:
        env = {**os.environ, "FIGSPEC_KERNEL": path,
               "FIGSPEC_CACHE": str(compiled_kernel(project / f"cache-{path}"))}
        p = subprocess.run([sys.executable, "-m", "figspec", "-v", "table", "specs/fig.yaml"],
                           cwd=project, env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert p.stderr.count(f"the {path} kernel") == 1, p.stderr
        tables.append(p.stdout)
    assert tables == [tables[0]] * len(PATHS)


# -- what is loaded, and where the compiled code goes ---------------------------------

def test_check_status_and_a_no_op_build_never_load_numba(project: Path, compiled_kernel):
    ck.make_pair(project / "ckpt")
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: relative_change}\n"
        "modules: qwen2\noutput: {formats: [svg]}\n"))
    env = {**os.environ, "FIGSPEC_CACHE": str(compiled_kernel(project / "cache"))}
    code = ("import sys; from figspec.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, 'numba' in sys.modules, 'figspec.sources.kernel' in sys.modules)")
    subprocess.run([sys.executable, "-m", "figspec", "build"], cwd=project, env=env,
                   check=True, capture_output=True)
    for argv in (["check"], ["status"], ["build"]):
        out = subprocess.run([sys.executable, "-c", code, *argv], cwd=project, env=env,
                             capture_output=True, text=True, check=True).stdout
        assert out.strip().splitlines()[-1] == "0 False False", argv


#: Modules of numba that only its compiler uses (its typing and lowering
#: registries), none of which the compiled kernel's code refers to.
COMPILER_ONLY = ("numba.typed.typeddict", "numba.np.random.generator_methods",
                 "numba.np.polynomial.polynomial_functions")


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_the_compiled_kernel_is_cached_in_figspec_s_cache(project: Path):
    """Compiled once into $FIGSPEC_CACHE/numba; the next process loads it
    (numba says so with NUMBA_DEBUG_CACHE), without importing numba's
    compiler (its registries: 90 % of loading), and gets the same table; the
    environment is not changed."""
    pair_of_sizes(project / "ckpt", [100, 7])
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: update_norm}\n"
        "modules: [q_proj]\nlayers: {last: 1}\n"))
    cache = project / "cache"
    code = ("import io, os, sys, json, contextlib; from figspec.cli import main; "
            "before = dict(os.environ); table = io.StringIO()\n"
            "with contextlib.redirect_stdout(table): main(['table', 'specs/fig.yaml'])\n"
            f"print(json.dumps([dict(os.environ) == before, table.getvalue(), "
            f"[m for m in {COMPILER_ONLY!r} if m in sys.modules]]))")
    logs, tables, compiler = [], [], []
    for _ in range(2):
        (cache / "metrics").exists() and [p.unlink() for p in (cache / "metrics").iterdir()]
        env = {**os.environ, "FIGSPEC_CACHE": str(cache), "NUMBA_DEBUG_CACHE": "1",
               "FIGSPEC_KERNEL": "numba"}
        p = subprocess.run([sys.executable, "-c", code], cwd=project, env=env,
                           capture_output=True, text=True, check=True)
        same_env, table, loaded = json.loads(p.stdout.strip().splitlines()[-1])
        assert same_env is True
        logs.append(p.stdout)
        tables.append([line for line in table.splitlines() if not line.startswith("[cache]")])
        compiler.append(loaded)
    assert list((cache / "numba").rglob("*.nbi"))
    assert "data saved" in logs[0] and "data saved" not in logs[1]
    assert "data loaded" in logs[1]
    assert tables[0] == tables[1] and len(tables[0]) == 3
    assert compiler[0] and compiler[1] == []  # compiling imported them; loading, none


def table_in_child(project: Path, env: dict[str, str], prelude: str = ""
                   ) -> subprocess.CompletedProcess:
    code = (f"import sys; {prelude}from figspec.cli import main; "
            "sys.exit(main(['-v', 'table', 'specs/fig.yaml']))")
    return subprocess.run([sys.executable, "-c", code], cwd=project, env=env,
                          capture_output=True, text=True)


def test_without_numba_the_numpy_path_gives_the_same_table(project: Path, compiled_kernel):
    """Where numba is asked for and cannot be imported, the numpy path is
    taken, and says so."""
    pair_of_sizes(project / "ckpt", [300, 70])
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: update_rms}\n"
        "modules: [q_proj]\nlayers: {last: 1}\n"))
    without = table_in_child(project, numba_env(project / "c1"),
                             "sys.modules['numba'] = None; ")  # import numba fails
    assert without.returncode == 0, without.stderr
    assert "the numpy kernel" in without.stderr and "numba kernel" not in without.stderr
    if HAVE_NUMBA:
        compiled = table_in_child(project, numba_env(compiled_kernel(project / "c2")))
        assert "the numba kernel" in compiled.stderr
        assert compiled.stdout == without.stdout


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_an_unwritable_cache_compiles_for_the_process_alone(project: Path):
    """No cache folder to write: compiled anyway, cached nowhere else (not
    beside the package's sources, as numba would by itself)."""
    pair_of_sizes(project / "ckpt", [300, 70])
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: update_rms}\n"
        "modules: [q_proj]\nlayers: {last: 1}\n"))
    (project / "not-a-folder").write_text("")
    package = Path(kernel.__file__).parent
    before = set(package.rglob("*.nb[ic]"))
    p = table_in_child(project, numba_env(project / "not-a-folder"))
    assert p.returncode == 0, p.stderr
    assert "compiled for this process alone" in p.stderr
    assert set(package.rglob("*.nb[ic]")) == before == set()


def test_reducing_threads_take_the_cores_drawing_leaves():
    """One budget of cores: drawing workers and reducing threads never add up
    to more than the machine (one thread at least)."""
    from figspec.session import Session, cores

    assert Session().cores == cores() >= 1
    assert Session(cores=16, drawing=4).reduce_threads() == 12
    assert Session(cores=16).reduce_threads() == 16
    assert Session(cores=2, drawing=2).reduce_threads() == 1
    assert Session(cores=2, drawing=5).reduce_threads() == 1


# -- dtypes and ranges through a figure --------------------------------------------------

Q = "model.layers.{}.self_attn.q_proj.weight"


def table(run, spec: str) -> dict[int, float]:
    code, out, err = run("table", spec)
    assert code == 0, err
    return {int(line.split(",")[0]): float(line.split(",")[-1])
            for line in out.splitlines()[1:]}


def test_tensors_not_drawn_may_be_of_any_dtype_and_fp8_weights_are_read(project: Path, run):
    """position_ids (I64), a mask (BOOL), U8 and F8_E5M2 tensors beside the drawn
    weights block nothing; drawn F8_E4M3 weights give their exact values."""
    rng = np.random.default_rng(5)
    weights = {Q.format(layer): bytes(bits_of("F8_E4M3", rng, 24)) for layer in range(2)}
    extra = {"model.position_ids": ("I64", (1, 4), np.arange(4, dtype="<i8").tobytes()),
             "model.mask": ("BOOL", (4,), bytes([1, 0, 1, 1])),
             "model.codes": ("U8", (3,), bytes([1, 2, 3])),
             "model.layers.0.mlp.up_proj.weight": ("F8_E5M2", (2,), bytes([0x3C, 0x7C]))}
    ck.write_safetensors(project / "ckpt" / "model.safetensors", {
        **{n: ("F8_E4M3", (4, 6), raw) for n, raw in weights.items()}, **extra})
    support.write(project / "specs" / "fig.yaml", "data: {checkpoint: ../ckpt, metric: norm}\n"
                  "modules: [q_proj]\nlayers: {last: 1}\n")
    got = table(run, "specs/fig.yaml")
    for layer, raw in enumerate(weights.values()):
        values = ck.decode(raw, "F8_E4M3", (24,))
        assert got[layer] == pytest.approx(math.sqrt(math.fsum(values * values)), rel=1e-15)


def test_a_drawn_tensor_of_a_dtype_not_read_is_named(project: Path, run):
    ck.write_safetensors(project / "ckpt" / "model.safetensors", {
        Q.format(0): ("BF16", (2,), bytes(4)), Q.format(1): ("I64", (2,), bytes(16))})
    support.write(project / "specs" / "fig.yaml", "data: {checkpoint: ../ckpt, metric: norm}\n"
                  "modules: [q_proj]\nlayers: {last: 1}\n")
    code, _, err = run("check", "specs/fig.yaml")
    assert code == 1
    assert (f"specs/fig.yaml:1:20: error: in ckpt/model.safetensors, tensor `{Q.format(1)}`: "
            "dtype 'I64' is not read") in err, err


@pytest.mark.parametrize("metric", ["norm", "rms", "update_norm", "update_rms",
                                    "relative_change", "cosine"])
def test_f64_weights_near_1e200_keep_their_metrics_in_range(project: Path, run, metric: str):
    """Their squares overflow a float64: the sums are taken of the values
    scaled by a power of two (exact), and the metrics undo it."""
    rng = np.random.default_rng(2)
    b = rng.normal(0, 1e200, 64)
    t = b + rng.normal(0, 1e199, 64)
    for side, values in (("base", b), ("tuned", t)):
        ck.write_safetensors(project / "ckpt" / side / "model.safetensors",
                             {Q.format(0): ("F64", (8, 8), values.tobytes())})
    base = "" if metric in ("norm", "rms") else ", base: ../ckpt/base"
    support.write(project / "specs" / "fig.yaml", f"data: {{checkpoint: ../ckpt/tuned{base}, "
                  f"metric: {metric}}}\nmodules: [q_proj]\nlayers: {{last: 0}}\n")
    f = [Fraction(x) for x in t]
    g = [Fraction(x) for x in b]
    tt, bb = sum(x * x for x in f), sum(x * x for x in g)
    dd, tb = sum((x - y) ** 2 for x, y in zip(f, g)), sum(x * y for x, y in zip(f, g))

    def root(q: Fraction) -> float:  # sqrt of a sum past float64's range
        return math.ldexp(math.sqrt(float(q / 4 ** 600)), 600)

    want = {"norm": root(tt), "rms": root(tt / 64), "update_norm": root(dd),
            "update_rms": root(dd / 64), "relative_change": math.sqrt(float(dd / bb)),
            "cosine": float(tb / 4 ** 600) / (root(tt) / 2 ** 600) / (root(bb) / 2 ** 600)
            }[metric]
    assert table(run, "specs/fig.yaml")[0] == pytest.approx(want, rel=1e-12)


# -- three tensors: two runs' updates from one base -------------------------------------

TRIPLE = {name: k for k, name in enumerate(kernel.TRIPLE_FIELDS)}
#: (T, O, B): one dtype for all, and mixed (a side of F64 values formed elsewhere).
TRIPLE_DTYPES = [(d, d, d) for d in ("BF16", "F16", "F32", "F64", *FP8)] + [
    ("BF16", "F64", "BF16"), ("F64", "F32", "F16"), ("F8_E4M3", "BF16", "F64")]


def triple_bits(dtypes: tuple[str, str, str], rng: np.random.Generator, n: int
                ) -> list[bytes]:
    """T, O and B as stored bytes, T and O near B (each entry of either moved
    a little, or a lot, or not at all). One dtype for all: across its whole
    range; mixed: across a range every one of them holds (2**-12 to 2**12)."""
    t_dtype, o_dtype, b_dtype = dtypes
    if t_dtype == o_dtype == b_dtype:
        b_bits = bits_of(b_dtype, rng, n)
        out = []
        for _ in range(2):
            bits = b_bits.copy()
            moved = rng.random(n) < 0.5
            bits[moved] ^= rng.integers(1, 64, int(moved.sum())).astype(bits.dtype)
            out.append(as_bytes(finite_fp8(bits, b_dtype) if b_dtype in FP8 else bits,
                                b_dtype))
        return [*out, as_bytes(b_bits, b_dtype)]
    b = rng.choice([-1.0, 1.0], n) * np.exp2(rng.uniform(-12, 12, n))
    sides = []
    for dtype in (t_dtype, o_dtype, b_dtype):
        if dtype in FP8:  # values of its own, every byte but NaN
            sides.append(as_bytes(bits_of(dtype, rng, n), dtype))
        else:
            moved = b if dtype == b_dtype else \
                np.where(rng.random(n) < 0.5, b * (1 + rng.normal(0, 1e-2, n)), b)
            sides.append(ck.encode(moved, dtype))
    return sides


def triple_of(raws: list[bytes], dtypes: tuple[str, str, str], path: str, scale: float = 1.0):
    (t, o, b), (td, od, bd) = raws, dtypes
    return kernel.triple(bytearray(t), td, bytearray(o), od, bytearray(b), bd, path, scale)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtypes", TRIPLE_DTYPES, ids="-".join)
def test_every_triple_sum_matches_an_exact_reference(dtypes: tuple[str, str, str], path: str):
    rng = np.random.default_rng(11)
    n = 3000
    raws = triple_bits(dtypes, rng, n)
    t, o, b = (exact(raw, d) for raw, d in zip(raws, dtypes))
    got = triple_of(raws, dtypes, path)
    u = [Fraction(x) - Fraction(z) for x, z in zip(t, b)]
    v = [Fraction(y) - Fraction(z) for y, z in zip(o, b)]
    w = [Fraction(x) - Fraction(y) for x, y in zip(t, o)]
    for name, (xs, ys) in {"uu": (u, u), "vv": (v, v), "uv": (u, v), "ww": (w, w)}.items():
        want = float(sum((x * y for x, y in zip(xs, ys)), Fraction(0)))
        scale = float(sum(abs(x * y) for x, y in zip(xs, ys)))
        assert close(got[TRIPLE[name]], want, scale), (name, got[TRIPLE[name]], want)
    assert got[TRIPLE["bad_t"]] == got[TRIPLE["bad_o"]] == got[TRIPLE["bad_b"]] == 0


@pytest.mark.skipif(not COMPILED, reason="neither numba nor a C compiler")
@pytest.mark.parametrize("dtypes", TRIPLE_DTYPES, ids="-".join)
@pytest.mark.parametrize("n", [1, 63, 64, 65, 2047, 2048, 2049, 100_003])
def test_the_compiled_paths_and_numpy_give_the_same_bits_for_three_tensors(
        dtypes: tuple[str, str, str], n: int):
    raws = triple_bits(dtypes, np.random.default_rng(n), n)
    scale = 2.0 ** -reduce.SCALE  # as a rescan of sums that overflowed takes them
    want = triple_of(raws, dtypes, "numpy").tobytes()
    scaled = triple_of(raws, dtypes, "numpy", scale).tobytes()
    for path in COMPILED:
        assert triple_of(raws, dtypes, path).tobytes() == want, path
        assert triple_of(raws, dtypes, path, scale).tobytes() == scaled, path


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32", "F64"])
def test_non_finite_entries_of_each_of_three_tensors_are_counted(dtype: str, path: str):
    """NaN and infinities in any side make a sum of squares non-finite and
    are counted per side, as the kernel's pair counts them."""
    values = np.array(SPECIAL * 10)
    t, o, b = values, np.roll(values, 3), np.roll(values, 7)
    raws = [ck.encode(x, dtype) for x in (t, o, b)]
    got = triple_of(raws, (dtype,) * 3, path)
    assert list(got[4:]) == [30, 30, 30]  # 3 of 10 values, 10 times, in each
    assert not math.isfinite(got[TRIPLE["uu"]]) and not math.isfinite(got[TRIPLE["ww"]])
    finite = np.array([1.0, 2.0] * 40)
    raws = [ck.encode(x, dtype) for x in (finite, finite, np.where(finite > 1, np.inf, 0))]
    got = triple_of(raws, (dtype,) * 3, path)
    assert list(got[4:]) == [0, 0, 40]
    assert got[TRIPLE["ww"]] == 0.0  # T - O is taken of the values: no base in it


def three_runs_of_sizes(folder: Path, sizes: list[int]) -> dict[str, dict[str, bytes]]:
    """A base, A and O with one q_proj per layer of ``sizes[layer]`` entries (1 x n)."""
    rng = np.random.default_rng(8)
    stored: dict[str, dict[str, bytes]] = {"base": {}, "a": {}, "o": {}}
    for layer, n in enumerate(sizes):
        name = f"model.layers.{layer}.self_attn.q_proj.weight"
        b = rng.normal(0, 0.02, n)
        d, e = rng.normal(0, 1e-3, n), rng.normal(0, 1e-3, n)
        for side, values in (("base", b), ("a", b + d), ("o", b + 0.5 * d + e)):
            stored[side][name] = ck.encode(values, "BF16")
    for side in stored:
        ck.write_safetensors(folder / side / "model.safetensors",
                             {n: ("BF16", (1, len(raw) // 2), raw)
                              for n, raw in stored[side].items()})
    return stored


def test_three_tensors_across_chunk_boundaries_match_the_reference(project: Path, run):
    stored = three_runs_of_sizes(project / "ckpt", SIZES)
    support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/a, other: ../ckpt/o, base: ../ckpt/base, "
        f"metric: update_cosine}}\nmodules: [q_proj]\nlayers: {{last: {len(SIZES) - 1}}}\n"))
    got = table(run, "specs/fig.yaml")
    for layer, n in enumerate(SIZES):
        name = f"model.layers.{layer}.self_attn.q_proj.weight"
        a, o, b = (ck.decode(stored[s][name], "BF16", (n,)) for s in ("a", "o", "base"))
        u, v = a - b, o - b
        want = math.fsum(u * v) / math.sqrt(math.fsum(u * u) * math.fsum(v * v))
        assert got[layer] == pytest.approx(want, rel=1e-12), layer


def test_the_same_three_tensor_sums_whatever_the_threads(project: Path):
    from figspec.sources.two_runs import reduce_triples

    three_runs_of_sizes(project / "ckpt", SIZES)
    sides = [open_checkpoint(project / "ckpt" / s) for s in ("a", "o", "base")]
    triples = {name: (sides[0][name], sides[1][name], sides[2][name]) for name in sides[0]}
    one = reduce_triples(triples, 1)
    assert reduce_triples(triples, 2) == one and reduce_triples(triples, 3) == one
    assert one["model.layers.3.self_attn.q_proj.weight"]["n"] == SIZES[3]


# -- compiled once per machine, and the command's fast end ----------------------------

def numba_env(cache: Path) -> dict[str, str]:
    """A child's environment: the numba path, its figspec cache ``cache``."""
    return {**os.environ, "FIGSPEC_KERNEL": "numba", "FIGSPEC_CACHE": str(cache)}


def small_table_project(project: Path, dtype: str = "BF16", folder: str = "ckpt") -> str:
    pair_of_sizes(project / folder, [300, 70], dtype=dtype)
    name = f"specs/{folder}.yaml"
    support.write(project / name, (
        f"data: {{checkpoint: ../{folder}/tuned, base: ../{folder}/base, metric: update_rms}}\n"
        "modules: [q_proj]\nlayers: {last: 1}\n"))
    return name


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_the_first_use_compiles_the_kernel_for_every_dtype(project: Path):
    """A BF16 pair's first table compiles every dtype's kernel into the cache:
    the first F32 (and F64) pair after it only loads (NUMBA_DEBUG_CACHE)."""
    cache = project / "cache"
    env = {**os.environ, "FIGSPEC_KERNEL": "numba", "FIGSPEC_CACHE": str(cache),
           "NUMBA_DEBUG_CACHE": "1"}
    logs = []
    for dtype in ("BF16", "F32", "F64"):
        spec = small_table_project(project, dtype, f"ckpt_{dtype.lower()}")
        p = subprocess.run([sys.executable, "-m", "figspec", "table", spec], cwd=project,
                           env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        logs.append(p.stdout)
    assert "data saved" in logs[0]
    for log in logs[1:]:
        assert "data saved" not in log and "data loaded" in log


@pytest.mark.parametrize("kernel", ["c", pytest.param("numba", marks=pytest.mark.skipif(
    not HAVE_NUMBA, reason="numba is not installed"))])
@pytest.mark.parametrize("to", ["pipe", "file"])
def test_the_command_ends_with_its_output_whole_and_its_status(project: Path, run, to: str,
                                                               kernel: str, compiled_kernel):
    """`python -m figspec table` of a checkpoint (the C kernel loaded, or
    numba): the whole table (to a pipe, to a file), status 0, the program's
    atexit handlers run; the interpreter's teardown is skipped (an object's
    __del__ at teardown never runs). A failing command keeps its status and
    message."""
    spec = small_table_project(project)
    env = {**numba_env(compiled_kernel(project / "cache")), "FIGSPEC_KERNEL": kernel}
    code = (f"import atexit, sys{', numba' if kernel == 'numba' else ''}\n"
            "class Teardown:\n"
            "    def __del__(self): print('torn down', file=sys.stderr)\n"
            "keep = Teardown()\n"
            "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
            "from figspec.cli import entry\n"
            "sys.argv = ['figspec', *sys.argv[1:]]\n"
            "entry()\n")
    expected = run("table", spec)[1]
    out = project / "table.csv"
    with out.open("w") as f:
        p = subprocess.run([sys.executable, "-c", code, "table", spec], cwd=project, env=env,
                           stdout=f if to == "file" else subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    assert p.returncode == 0, p.stderr
    assert (out.read_text() if to == "file" else p.stdout) == expected
    assert expected.count("\n") == 3
    assert "atexit ran" in p.stderr and "torn down" not in p.stderr
    bad = subprocess.run([sys.executable, "-c", code, "table", "specs/nothing.yaml"],
                         cwd=project, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "nothing.yaml" in bad.stderr
    assert "atexit ran" in bad.stderr


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_a_program_calling_main_or_build_keeps_its_interpreter(project: Path, compiled_kernel):
    """main() and figspec.build return to their caller, numba loaded or not;
    its exit is its own (its teardown runs)."""
    spec = small_table_project(project)
    env = numba_env(compiled_kernel(project / "cache"))
    code = ("import sys, figspec\n"
            "class Teardown:\n"
            "    def __del__(self): print('torn down', flush=True)\n"
            "keep = Teardown()\n"
            "from figspec.cli import main\n"
            f"rc = main(['table', {spec!r}])\n"
            f"figspec.build([{spec!r}])\n"
            "print('after', rc, 'numba' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=project, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-2:] == ["after 0 True", "torn down"]
