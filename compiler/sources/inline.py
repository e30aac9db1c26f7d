"""Records written in the spec itself (``data.values``); a row's origin is
its place in the spec."""

from __future__ import annotations

from . import Context, Rows, Source


class Inline(Source):
    at = ("data", "values")

    def read(self, ctx: Context) -> Rows:
        values = ctx.data.values or []
        rows = [(("data", "values", i), r) for i, r in enumerate(values)]
        columns = sorted({k for _, r in rows for k in r})
        return Rows(rows, columns, "data.values")  # type: ignore[arg-type]


SOURCE = Inline()
