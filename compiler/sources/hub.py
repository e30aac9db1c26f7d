"""``hf:org/name[@revision]``: a model in the local Hugging Face hub cache,
found offline, as ``huggingface_hub`` lays it out (no import of it):

    <hub>/models--org--name/refs/<revision>      the commit a branch or tag is at
    <hub>/models--org--name/snapshots/<commit>/  the files, links into ../../blobs

``<hub>`` is ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``, as
``huggingface_hub`` itself decides. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from ..files import looked_at, read_bounded

#: ``hf:org/name`` and an optional ``@revision`` (a branch, a tag or a commit).
_ID = re.compile(r"hf:(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95})"
                 r"(?:@(?P<rev>[A-Za-z0-9][A-Za-z0-9._-]{0,99}))?")
_COMMIT = re.compile(r"[0-9a-f]{40}")

Fail = Callable[..., Exception]


def hub_cache() -> Path:
    """The hub cache folder, as huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "huggingface" / "hub"


def snapshot(written: str, fail: Fail) -> Path:
    """The snapshot folder of ``hf:org/name[@revision]``; ``fail(message, hint)``
    makes the error raised when it is not in the cache."""
    m = _ID.fullmatch(written)
    if m is None:
        raise fail(f"{written!r} is not a Hugging Face model id",
                   "write `hf:org/name`, or `hf:org/name@revision`")
    repo, rev = m.group("repo"), m.group("rev") or "main"
    if ".." in repo:
        raise fail(f"{written!r} is not a Hugging Face model id", "write `hf:org/name`")
    model = hub_cache() / ("models--" + repo.replace("/", "--"))
    download = f"download it first: `hf download {repo}" + (
        f" --revision {rev}`" if m.group("rev") else "`") + " (or `huggingface-cli download`)"
    ref = model / "refs" / rev
    looked_at(ref)
    commit = rev if _COMMIT.fullmatch(rev) else _read_ref(ref)
    if commit is None:
        raise fail(f"{repo} (revision {rev}) is not in the Hugging Face cache at {hub_cache()}",
                   download)
    folder = model / "snapshots" / commit
    looked_at(folder)
    if not folder.is_dir():
        raise fail(f"{repo} at commit {commit[:12]} is not in the Hugging Face cache at "
                   f"{hub_cache()}", download)
    return folder


def _read_ref(ref: Path) -> str | None:
    """The commit a ref file names, or None when there is none."""
    try:
        text = read_bounded(ref, 1024).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if _COMMIT.fullmatch(text) else None
