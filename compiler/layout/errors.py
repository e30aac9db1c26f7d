"""Why a figure cannot be drawn readably, with where in the spec and how to fix it."""

from __future__ import annotations


class LayoutError(ValueError):
    """A figure that cannot be drawn readably, with where in the spec (relative
    to the heatmap's own place: the top level or a panel) and how to fix it."""

    def __init__(self, loc: tuple[str | int, ...], message: str, hint: str | None = None):
        super().__init__(message)
        self.loc, self.hint = loc, hint


class FitError(LayoutError):
    """The requested size is too small for what surrounds the cells."""

    def __init__(self, message: str, hint: str):
        super().__init__(("size",), message, hint)


class LabelError(LayoutError):
    """Module labels that run into each other; ``need`` is the cell width (pt)
    at which they would not, at the best angle allowed; ``options`` what fits."""

    def __init__(self, loc: tuple[str | int, ...], message: str, options: list[str],
                 need: float):
        super().__init__(loc, message, either(options))
        self.need, self.options = need, options


def either(options: list[str]) -> str | None:
    """``use a, b or c``."""
    if not options:
        return None
    return "use " + (", ".join(options[:-1]) + " or " if len(options) > 1 else "") + options[-1]
