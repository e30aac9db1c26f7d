"""Which module reads each kind of data source: a key of ``data`` (such as
``values``) or, for ``data.path``, the file's suffix. Plain names, imported
only when a spec uses the source; the spec language (:mod:`figspec.models`)
reads the suffixes from here, without importing any source."""

from __future__ import annotations

from typing import Any

#: `data` key -> the module reading that kind of source (or a source object).
#: The first key `data` sets names its source: two runs' `other` (`others`)
#: before `checkpoint` (`checkpoints`), which it goes with.
BY_KEY: dict[str, Any] = {"values": "figspec.sources.inline",
                          "other": "figspec.sources.two_runs",
                          "others": "figspec.sources.two_run_steps",
                          "checkpoint": "figspec.sources.checkpoint",
                          "checkpoints": "figspec.sources.trajectory"}
#: `data.path`'s suffix -> the module reading that kind of file (or a source object).
BY_SUFFIX: dict[str, Any] = {
    ".csv": "figspec.sources.tabular", ".tsv": "figspec.sources.tabular",
    ".json": "figspec.sources.tabular", ".jsonl": "figspec.sources.tabular",
    ".parquet": "figspec.sources.tabular",
}
