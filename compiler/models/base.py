"""What every model of the spec language shares: its configuration, the
bounds that keep a hostile spec from costing time or memory, and how a
partial spec (``_base.yaml``) is told apart."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationInfo

#: Bounds that keep a hostile spec from costing time or memory: the largest
#: layer index, the most modules, and the longest texts (a 10,000-character
#: title made a 229-megapixel PNG).
MAX_LAYER_INDEX = 1_000_000_000
MAX_MODULES = 1_000
MAX_TITLE = 300
MAX_LABEL = 100


def partial(info: ValidationInfo) -> bool:
    """Validating a partial spec (``_base.yaml``): what is there must be valid,
    nothing is required (the specs extending it give the rest)."""
    return bool(info.context and info.context.get("partial"))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
