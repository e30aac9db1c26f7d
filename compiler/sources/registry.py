"""Which module reads each kind of data source: a key of ``data`` (such as
``values``) or, for ``data.path``, the file's suffix. Plain names, imported
only when a spec uses the source; the spec language (:mod:`compiler.models`)
reads the suffixes from here, without importing any source."""

from __future__ import annotations

from typing import Any

#: `data` key -> the module reading that kind of source (or a source object).
BY_KEY: dict[str, Any] = {"values": "compiler.sources.inline",
                          "checkpoint": "compiler.sources.checkpoint",
                          "checkpoints": "compiler.sources.trajectory"}
#: `data.path`'s suffix -> the module reading that kind of file (or a source object).
BY_SUFFIX: dict[str, Any] = {
    ".csv": "compiler.sources.tabular", ".tsv": "compiler.sources.tabular",
    ".json": "compiler.sources.tabular", ".jsonl": "compiler.sources.tabular",
    ".parquet": "compiler.sources.tabular",
}
