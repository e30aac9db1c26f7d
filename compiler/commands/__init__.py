"""The commands: one module each, each a function taking plain values and
returning an exit status. :mod:`figspec.cli` parses the command line into
those values, and :func:`figspec.errors.run` maps what a command raises to
an exit status. What the commands share lives here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..diagnostics import display_path

if TYPE_CHECKING:
    from ..builder import Options


def spec_paths(paths: Sequence[Path]) -> list[Path]:
    """The PATHs named, else the command's project's specs folder."""
    from ..project import of_command

    if paths:
        return list(paths)
    return [Path(display_path(of_command([]).specs_dir))]


def options(paths: Sequence[Path], out: Path | None = None, *, allow_outside: bool = False,
            force: bool = False, jobs: int | None = None, engine: str | None = None
            ) -> Options:
    """Build options; the out dir is ``out``, else the command's project's;
    the engine ``engine``, else the project's (figspec.yaml's ``engine``)."""
    from ..builder import Options
    from ..project import of_command

    project = of_command(list(paths))
    out_dir = out or Path(display_path(project.out_dir))
    return Options(out_dir=out_dir, allow_outside=allow_outside, force=force, jobs=jobs,
                   engine=engine or project.engine)
