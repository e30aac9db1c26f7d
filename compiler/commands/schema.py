"""``figspec schema``: the JSON Schema of a spec."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import OK


def schema() -> int:
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return OK


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec, as committed in ``schemas/figspec.schema.json``:
    pydantic's, plus what the models' validators accept that pydantic does not
    describe."""
    from ..models import Spec
    from ..presets import MODULE_PRESETS

    schema = Spec.model_json_schema(mode="validation")
    # A module may also be written as a bare string (models.Module),
    # and the list as a preset's name (models.Modules).
    preset = {"enum": list(MODULE_PRESETS), "description": "A preset list of modules."}
    for props in (schema["properties"], schema["$defs"]["Panel"]["properties"]):
        modules = props["modules"]
        for option in modules.get("anyOf", [modules]):
            if option.get("type") == "array":
                option["items"] = {"anyOf": [{"type": "string", "minLength": 1},
                                             option["items"]]}
        if "anyOf" in modules:
            modules["anyOf"].insert(0, preset)
        else:
            meta = ("title", "description", "examples", "default")
            props["modules"] = {"anyOf": [preset, {k: v for k, v in modules.items()
                                                   if k not in meta}],
                                **{k: v for k, v in modules.items() if k in meta}}
    # `data` and `modules` are required unless `panels` are given (Spec._views).
    schema["anyOf"] = [{"required": ["data", "modules"]}, {"required": ["panels"]},
                       {"required": ["extends"]}]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://figspec.dev/schemas/figspec.schema.json"
    return schema
