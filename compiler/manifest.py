"""What each figure was built from, so that a build redoes only what changed.

The manifest (``<out dir>/.figspec-manifest.json``) records, per spec: the
output name, the environment key (figspec's and the renderer's versions),
and a stamp (size, mtime, SHA-256) of every input (the spec and its data
files) and every output. A figure is up to date when the environment is the
same, no input's content changed, and every output is there as written.
Stamps make the common case cheap: a file whose size and mtime are unchanged
is not read; one whose stat changed is hashed, so a ``touch`` or a checkout
that restores the same bytes does not cause a rebuild.

This module imports nothing heavy: a no-op build never loads pydantic,
Altair or vl-convert.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .diagnostics import display_path
from .files import (
    GLOB_PART,
    IDENTITY_NAME,
    REMOTE_PART,
    Stamp,
    glob_change,
    glob_same,
    hash_file,
    read_bounded,
    write_atomic,
)

MANIFEST = ".figspec-manifest.json"
FORMAT = 1
#: A manifest larger than this is not read (it is rebuilt): ~1 KB per figure.
MAX_MANIFEST_BYTES = 64_000_000
def _same(path: Path, stamp: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``path`` still holds what ``stamp`` recorded; and a refreshed
    stamp when the content is the same but the stat changed. Only a regular
    file can be the same: a FIFO or a device named by a damaged manifest is
    never opened (a FIFO would block, /dev/zero never end)."""
    if stamp.get("part", "").startswith(REMOTE_PART):  # the Hub, a store: asked there
        from .sources.inplace import still

        return still(stamp), None
    if "part" in stamp:
        return _same_part(path, stamp)
    try:
        st = path.stat()
    except OSError:
        return False, None
    if not stat.S_ISREG(st.st_mode) or st.st_size != stamp["size"]:
        return False, None
    if "ctime_ns" in stamp:  # an identity stamp: the file is too large to hash
        return (st.st_mtime_ns, st.st_ino, st.st_ctime_ns) == \
            (stamp["mtime_ns"], stamp.get("inode"), stamp["ctime_ns"]), None
    if st.st_mtime_ns == stamp["mtime_ns"]:
        return True, None
    try:
        digest = hash_file(path, st.st_size)
    except OSError:
        return False, None
    if digest != stamp["sha256"]:
        return False, None
    return True, {**stamp, "mtime_ns": st.st_mtime_ns}


def _same_part(path: Path, stamp: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    """Whether a part of figspec.yaml (``path`` is ``figspec.yaml::roots.ckpt``)
    still holds what it held: unchanged when the file's mtime is; else the
    file is read again (it is small) and the part compared."""
    from .project import PART_SEPARATOR, load, part_digest

    file = Path(str(path).rsplit(PART_SEPARATOR, 1)[0])
    if stamp["part"].startswith(GLOB_PART):
        return glob_same(file, stamp), None
    try:
        mtime = file.stat().st_mtime_ns
        if mtime == stamp["mtime_ns"] and "held" not in stamp:
            return True, None
        # a part that holds what it resolved to (a root from $VAR) depends on
        # the environment too: its digest is made again from it
        settings = load(file)
    except Exception:  # gone, unreadable or invalid: the figure is checked again
        return False, None
    if settings is None or part_digest(settings, stamp["part"]) != stamp["sha256"]:
        return False, None
    return True, ({**stamp, "mtime_ns": mtime} if mtime != stamp["mtime_ns"] else None)


def _valid_stamp(stamp: Any) -> bool:
    return (isinstance(stamp, dict) and isinstance(stamp.get("size"), int)
            and isinstance(stamp.get("mtime_ns"), int) and isinstance(stamp.get("sha256"), str)
            and all(isinstance(stamp.get(k, 0), int) for k in ("inode", "ctime_ns"))
            and all(isinstance(stamp.get(k, ""), str) for k in ("part", "label", "held")))


def _valid_entry(key: Any, entry: Any) -> bool:
    """One figure's record, as :meth:`Manifest.record` writes it."""
    def stamps(value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(k, str) and "\x00" not in k and _valid_stamp(v) for k, v in value.items())

    return (isinstance(key, str) and "\x00" not in key and isinstance(entry, dict)
            and isinstance(entry.get("name"), str) and "\x00" not in entry["name"]
            and "/" not in entry["name"] and isinstance(entry.get("env"), str)
            and stamps(entry.get("inputs")) and stamps(entry.get("outputs")))


def env_change(old: str, new: str) -> str:
    """What differs between two environment keys, said plainly:
    ``vl-convert-python 1.9.0 -> 1.10.0``, ``figspec.yaml added``."""

    def parts(key: str) -> dict[str, str]:
        versions, _, project = key.partition("|project=")
        out = dict(v.split("==", 1) for v in versions.split(";") if "==" in v)
        out["figspec.yaml"] = project
        return out

    before, after = parts(old), parts(new)
    changes = []
    for name in sorted(before.keys() | after.keys()):
        was, now = before.get(name, "?"), after.get(name, "?")
        if was == now:
            continue
        if name != "figspec.yaml":
            changes.append(f"{name} {was} -> {now}")
        elif was in ("None", "?", ""):
            changes.append(f"figspec.yaml added ({display_path(now)})")
        elif now == "None":
            changes.append(f"figspec.yaml removed ({display_path(was)})")
        else:
            changes.append(f"figspec.yaml is now {display_path(now)}, was {display_path(was)}")
    return ", ".join(changes) or "figspec or renderer version changed"


def _changed(path: Path, stamp: dict[str, Any]) -> str:
    """Why an input makes its figure stale, as `status` says it."""
    if stamp.get("part", "").startswith(REMOTE_PART):
        from .sources.inplace import change

        return change(stamp)
    if "part" in stamp and stamp["part"].startswith(GLOB_PART):
        return glob_change(Path(str(path).rsplit("::", 1)[0]), stamp)
    if "part" in stamp:
        file = str(path).rsplit("::", 1)[0]
        return _part_change(Path(file), stamp) or \
            f"{display_path(file)} changed its `{stamp['part']}`"
    if "held" in stamp and "label" in stamp:
        return _held_change(path, stamp)
    what = f"{IDENTITY_NAME} " if "ctime_ns" in stamp else ""
    return f"{what}{display_path(path)} changed"


def _part_change(file: Path, stamp: dict[str, Any]) -> str | None:
    """What a part that resolved through the environment resolves to now."""
    from .project import load, part_change

    try:
        settings = load(file)
    except Exception:  # gone or invalid: said as a change of the file
        return None
    return part_change(settings, stamp["part"], stamp.get("held")) if settings else None


#: What a small input that names something (a hub ref) may hold, at most.
_HELD_BYTES = 1024


def _held_change(path: Path, stamp: dict[str, Any]) -> str:
    """A small input naming something (a hub ref naming a commit) that names
    something else now: "hf:org/name: refs/main is now 0123456789ab (was ...)"."""
    was = _short(stamp["held"])
    try:
        now = read_bounded(path, _HELD_BYTES).decode("utf-8", "replace").strip()
    except OSError:
        return f"{stamp['label']} is gone (was {was})"
    return f"{stamp['label']} is now {_short(now)} (was {was})" if now != stamp["held"] else \
        f"{stamp['label']} changed"


def _short(value: str) -> str:
    """A commit as git shortens it (12 digits); anything else as it is."""
    return value[:12] if len(value) == 40 and all(c in "0123456789abcdef" for c in value) \
        else value[:200]


class Manifest:
    """The out dir's record of what was built from what."""

    def __init__(self, out_dir: Path, entries: dict[str, dict[str, Any]] | None = None,
                 orphaned: dict[str, dict[str, Any]] | None = None):
        self.out_dir = out_dir
        self.entries = entries or {}
        #: outputs figspec wrote that no spec writes any more (a renamed
        #: `output.name`, a dropped format): file name -> stamp as written
        self.orphaned = orphaned or {}
        self.dirty = False

    @property
    def path(self) -> Path:
        return self.out_dir / MANIFEST

    @classmethod
    def load(cls, out_dir: Path) -> Manifest:
        """The manifest, or an empty one if it is missing or unreadable (then
        everything is rebuilt, which is always safe)."""
        try:
            data = json.loads(read_bounded(out_dir / MANIFEST, MAX_MANIFEST_BYTES))
        except (OSError, ValueError, RecursionError):
            return cls(out_dir)
        if not isinstance(data, dict) or data.get("format") != FORMAT or \
                not isinstance(data.get("figures"), dict):
            return cls(out_dir)
        # A damaged entry is dropped (its figure is rebuilt), never trusted.
        figures = {k: v for k, v in data["figures"].items() if _valid_entry(k, v)}
        orphaned = data.get("orphaned")
        orphaned = {k: v for k, v in orphaned.items() if isinstance(k, str) and "/" not in k
                    and _valid_stamp(v)} if isinstance(orphaned, dict) else {}
        return cls(out_dir, figures, orphaned)

    def _key(self, path: Path) -> str:
        """Paths are stored relative to the out dir, so a moved project stays valid."""
        return os.path.relpath(path.resolve(), self.out_dir.resolve())

    def _abs(self, key: str) -> Path:
        return (self.out_dir / key).resolve()

    def name_of(self, spec: Path) -> str | None:
        entry = self.entries.get(self._key(spec))
        return entry["name"] if entry else None

    def inputs_of(self, spec: Path) -> list[Path]:
        entry = self.entries.get(self._key(spec))
        # a part of figspec.yaml (`figspec.yaml::defaults`) is that file
        return [self._abs(k.rsplit("::", 1)[0]) for k in entry["inputs"]] if entry else []

    def stale_reason(self, spec: Path, env: str) -> str | None:
        """Why the figure of ``spec`` must be rebuilt, or None if it is up to date."""
        entry = self.entries.get(self._key(spec))
        if entry is None:
            return "new"
        if entry.get("env") != env:
            return env_change(str(entry.get("env")), env)
        for key, stamp in entry["inputs"].items():
            same, fresh = _same(self._abs(key), stamp)
            if not same:
                return _changed(self._abs(key), stamp)
            if fresh:
                entry["inputs"][key], self.dirty = fresh, True
        for fmt, stamp in entry["outputs"].items():
            target = self.out_dir / f"{entry['name']}.{fmt}"
            if not target.exists():
                return f"{display_path(target)} is missing"
            same, fresh = _same(target, stamp)
            if not same:
                return f"{display_path(target)} was modified"
            if fresh:
                entry["outputs"][fmt], self.dirty = fresh, True
        return None

    def record(self, spec: Path, name: str, env: str, inputs: dict[Path, Stamp],
               outputs: dict[str, tuple[Path, bytes]]) -> None:
        """Remember a successful build. ``inputs`` were stamped as they were read
        (see :func:`figspec.files.read_stamped`). Outputs the figure had before
        and has no more are remembered as orphaned."""
        old = self.entries.get(self._key(spec))
        if isinstance(old, dict):
            for fmt, stamp in old.get("outputs", {}).items():
                if old.get("name") != name or fmt not in outputs:
                    self.orphaned[f"{old.get('name')}.{fmt}"] = stamp
        for fmt in outputs:
            self.orphaned.pop(f"{name}.{fmt}", None)
        self.entries[self._key(spec)] = {
            "name": name,
            "env": env,
            "inputs": {self._key(p): stamp.record() for p, stamp in inputs.items()},
            "outputs": {fmt: Stamp.of(path, content).record()
                        for fmt, (path, content) in outputs.items()},
        }
        self.dirty = True

    def orphans(self) -> dict[Path, bool]:
        """Files in the out dir that figspec wrote for a spec that is gone, or
        under a name or format no spec writes now; each with whether it still
        holds what figspec wrote (a file edited since is never removed)."""
        candidates = dict(self.orphaned)
        live: set[str] = set()
        for key, entry in self.entries.items():
            files = {f"{entry['name']}.{fmt}": stamp for fmt, stamp in entry["outputs"].items()}
            if self._abs(key).exists():
                live.update(files)
            else:
                candidates.update(files)
        out = {}
        for name, stamp in sorted(candidates.items()):
            target = self.out_dir / name
            if name not in live and target.is_file():
                out[target] = _same(target, stamp)[0]
        return out

    def clean(self) -> tuple[list[Path], list[Path]]:
        """Remove the orphans that still hold what figspec wrote, and forget
        specs that are gone. Returns (removed, kept because edited since)."""
        removed, kept = [], []
        for target, unchanged in self.orphans().items():
            if unchanged:
                target.unlink()
                removed.append(target)
            else:
                kept.append(target)
        gone = [k for k in self.entries if not self._abs(k).exists()]
        for key in gone:
            del self.entries[key]
        self.orphaned = {}
        self.dirty = True
        return removed, kept

    def save(self, *, refresh_only: bool = False) -> None:
        """Write the manifest. ``refresh_only``: nothing was built, only stamps
        refreshed; then a read-only out dir is no error (reading must not
        require writing), the refresh is merely not kept."""
        if not self.dirty:
            return
        if refresh_only:
            try:
                self.save()
            except OSError:
                pass
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": FORMAT, "figures": self.entries, "orphaned": self.orphaned},
                          indent=1, sort_keys=True)
        write_atomic(self.path, (text + "\n").encode())
        self.dirty = False
