"""``figspec clean``: remove what figspec wrote for specs that are gone."""

from __future__ import annotations

from pathlib import Path

from ..diagnostics import display_path
from ..errors import OK
from . import options


def clean(*, out: Path | None = None) -> int:
    """Only files the manifest says figspec wrote; a file edited since it was
    written is kept."""
    from ..manifest import Manifest
    from ..project import of_command
    from ..sources import numbers

    manifest = Manifest.load(options([], out).out_dir)
    removed, kept = manifest.clean()
    manifest.save()
    # Committed numbers beside a spec that is gone (a figure's, not the out dir's).
    for path, unchanged in numbers.orphans(of_command([]).specs_dir).items():
        if unchanged:
            path.unlink()
            removed.append(path)
        else:
            kept.append(path)
    for p in removed:
        print(f"removed {display_path(p)}")
    for p in kept:
        print(f"kept    {display_path(p)} (edited since figspec wrote it)")
    print(f"{len(removed)} removed, {len(kept)} kept")
    return OK
