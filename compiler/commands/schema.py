"""``figspec schema``: the JSON Schema of a spec."""

from __future__ import annotations

import json
import sys

from ..errors import OK


def schema() -> int:
    from ..models import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return OK
