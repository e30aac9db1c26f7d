"""The HTML page of a run's steps: one heatmap and a slider over the steps."""

from __future__ import annotations

from typing import Any

from ..cells import Table
from ..models import Spec
from .scales import color_domain
from .vegalite import draft

#: The slider's parameter: a step of a run, as Vega-Lite names it.
STEP_PARAM = "figspec_step"


def steps_slider(spec: Spec, tables: list[Table]) -> dict[str, Any] | None:
    """A run's steps drawn `x: module` (one heatmap per step), for the HTML
    page: one heatmap and a slider over the steps (a Vega-Lite parameter
    bound to a range input; a select where the steps are not evenly spaced),
    the colour domain that of every step, so colours compare. None for
    any other figure, or one of several views."""
    if len(tables) < 2 or any(t.step is None or t.view is None for t in tables) or \
            len({id(t.view.data) for t in tables}) != 1:  # type: ignore[union-attr]
        return None  # not one run's steps
    first = tables[0]
    if any(t.layers != first.layers or t.modules != first.modules for t in tables):
        return None
    view = first.view or spec.views[0]
    one = spec.model_copy(update={
        "panels": None, "data": view.data, "modules": list(first.modules),
        "layers": view.layers, "domain": color_domain(spec, tables)})
    # The static figure is checked; this page draws its cells the same.
    vl = draft(one, [first])
    steps = [t.step[0] for t in tables]  # type: ignore[index]
    records = [{**r, "step": t.step[0]} for t in tables  # type: ignore[index]
               for r in t.records()]
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    bind: dict[str, Any] = ({"input": "range", "min": steps[0], "max": steps[-1],
                             "step": gaps.pop(), "name": "step "} if len(gaps) == 1 else
                            {"input": "select", "options": steps, "name": "step "})
    vl["data"] = {"values": records}
    vl["params"] = [{"name": STEP_PARAM, "value": steps[0], "bind": bind}]
    vl["transform"] = [{"filter": f"datum.step == {STEP_PARAM}"}]
    return vl
