"""``hf:org/name[@revision]``: a model in the local Hugging Face hub cache,
found offline, as ``huggingface_hub`` lays it out (no import of it; it is
imported, by :func:`library`, only to ask the Hub itself):

    <hub>/models--org--name/refs/<revision>      the commit a branch or tag is at
    <hub>/models--org--name/snapshots/<commit>/  the files, links into ../../blobs

``<hub>`` is ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``, as
``huggingface_hub`` itself decides. Nothing is ever downloaded.

A branch or tag moves when a new revision is downloaded, while the old
snapshot's files stay: the ref file read is an input of the figure (stamped
with the commit it named), so moving it makes the figure stale.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..files import Stamp, looked_at, read_stamped

#: ``hf:org/name`` and an optional ``@revision`` (a branch, a tag or a commit).
_ID = re.compile(r"hf:(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95})"
                 r"(?:@(?P<rev>[A-Za-z0-9][A-Za-z0-9._-]{0,99}))?")
_COMMIT = re.compile(r"[0-9a-f]{40}")

Fail = Callable[..., Exception]


class Unimportable(Exception):
    """huggingface_hub is installed but fails to import: it reads the HF_*
    environment variables when it is imported, and refuses some (2.3 wants
    HF_HUB_DOWNLOAD_TIMEOUT in whole seconds)."""


def library() -> Any:
    """huggingface_hub (with its ``utils``), imported; Unimportable where the
    import itself fails on this environment."""
    try:
        import huggingface_hub
        import huggingface_hub.utils  # noqa: F401

        # its attributes are imported when first asked for: asked here
        huggingface_hub.HfApi, huggingface_hub.get_session  # noqa: B018
    except ImportError:  # not installed: never asked (inplace reads the hub cache alone)
        raise
    except Exception as e:  # its constants, read from the environment at import
        raise Unimportable(f"{type(e).__name__}: {e}") from None
    return huggingface_hub


class UnknownHome(Exception):
    """The hub cache's folder starts with ``~`` and that home is unknown."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def hub_cache() -> Path:
    """The hub cache folder, as huggingface_hub finds it; UnknownHome when
    it lies under a home folder that cannot be found (``~user`` with no such
    user, or ``~`` with HOME unset and no home in the password database)."""
    for variable, below in (("HF_HUB_CACHE", ""), ("HF_HOME", "hub")):
        if os.environ.get(variable):
            return _expanded(os.environ[variable], variable) / below
    if os.environ.get("XDG_CACHE_HOME"):
        return _expanded(os.environ["XDG_CACHE_HOME"], "XDG_CACHE_HOME") / "huggingface" / "hub"
    return _expanded("~/.cache", None) / "huggingface" / "hub"


def _expanded(folder: str, variable: str | None) -> Path:
    """``folder`` with a leading ``~`` or ``~user`` expanded (os.path.expanduser
    leaves it as written when the home is unknown: a folder named ``~`` in
    the working directory would be read instead)."""
    expanded = os.path.expanduser(folder)
    if not expanded.startswith("~"):
        return Path(expanded)
    user = folder[1:].split("/", 1)[0]
    whose = f"user {user!r}, whom this system does not know" if user else \
        "the home folder, which is unknown (HOME is not set and this user has none in " \
        "the password database)"
    if variable is None:
        raise UnknownHome(f"the Hugging Face cache is ~/.cache/huggingface/hub, under {whose}",
                          "set HOME, or HF_HUB_CACHE to the hub cache's folder")
    raise UnknownHome(f"{variable} is {folder!r}, under the home of {whose}" if user else
                      f"{variable} is {folder!r}, under {whose}",
                      f"set {variable} to a folder path (`~` alone is the home folder)")


def snapshot(written: str, fail: Fail, stamps: dict[Path, Stamp] | None = None) -> Path:
    """The snapshot folder of ``hf:org/name[@revision]``; ``fail(message, hint)``
    makes the error raised when it is not in the cache. The ref file read (a
    branch or tag, not a commit) is added to ``stamps`` as it was read."""
    m = _ID.fullmatch(written)
    if m is None:
        raise fail(f"{written!r} is not a Hugging Face model id",
                   "write `hf:org/name`, or `hf:org/name@revision`")
    repo, rev = m.group("repo"), m.group("rev") or "main"
    if ".." in repo:
        raise fail(f"{written!r} is not a Hugging Face model id", "write `hf:org/name`")
    try:
        hub = hub_cache()
    except UnknownHome as e:
        raise fail(e.message, e.hint) from None
    model = hub / ("models--" + repo.replace("/", "--"))
    download = f"download it first: `hf download {repo}" + (
        f" --revision {rev}`" if m.group("rev") else "`") + " (or `huggingface-cli download`)"
    ref = model / "refs" / rev
    looked_at(ref)
    commit = rev if _COMMIT.fullmatch(rev) else _read_ref(ref, f"{written}: refs/{rev}", stamps)
    if commit is None:
        raise fail(f"{repo} (revision {rev}) is not in the Hugging Face cache at {hub}",
                   download)
    folder = model / "snapshots" / commit
    looked_at(folder)
    if not folder.is_dir():
        raise fail(f"{repo} at commit {commit[:12]} is not in the Hugging Face cache at "
                   f"{hub}", download)
    return folder


def _read_ref(ref: Path, label: str, stamps: dict[Path, Stamp] | None) -> str | None:
    """The commit a ref file names, or None when there is none; its stamp,
    labelled and holding the commit (what `status` says it named), is kept."""
    try:
        raw, stamp = read_stamped(ref, 1024)
    except OSError:
        return None
    text = raw.decode("ascii", "replace").strip()
    if not _COMMIT.fullmatch(text):
        return None
    if stamps is not None:
        stamps[ref] = Stamp(stamp.size, stamp.mtime_ns, stamp.sha256, label=label, held=text)
    return text


# -- the Hub online (huggingface_hub, imported only here and only when used) --------
#
# The user's settings are read when a call is made, as huggingface_hub reads
# them at its import: a figspec run in a process that changed them (a test,
# a notebook) follows the change.

def parsed(written: str) -> tuple[str, str | None] | None:
    """``hf:org/name[@revision]`` as (repo, revision); None when it is not one."""
    m = _ID.fullmatch(written)
    if m is None or ".." in m.group("repo"):
        return None
    return m.group("repo"), m.group("rev")


def offline() -> bool:
    """Whether the user forbids the network (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def endpoint() -> str:
    """The Hub's address: HF_ENDPOINT, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def timeout() -> float:
    """Seconds a request may wait for the Hub (HF_HUB_DOWNLOAD_TIMEOUT, default 10)."""
    try:
        return max(float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or 10), 0.05)
    except ValueError:
        return 10.0


def cached(written: str) -> bool:
    """Whether ``hf:org/name[@revision]`` is in the local hub cache."""
    class _Missing(Exception):
        pass

    try:
        snapshot(written, lambda *a, **k: _Missing())
    except _Missing:
        return False
    return True


def revision_info(repo: str, revision: str) -> tuple[str, list[tuple[str, int, str]]]:
    """The commit ``revision`` is at and its files: (name, size, content
    hash: the LFS sha256, else the git blob id). huggingface_hub's errors
    are raised as they are (:mod:`figspec.sources.remote` explains them)."""
    api = library().HfApi(endpoint=endpoint())
    info = api.model_info(repo, revision=revision, files_metadata=True, timeout=timeout())
    files = []
    for s in info.siblings or []:
        digest = f"sha256:{s.lfs.sha256}" if s.lfs else f"git:{s.blob_id}"
        files.append((s.rfilename, int(s.lfs.size if s.lfs else s.size or 0), digest))
    return str(info.sha), files


def refs(repo: str) -> list[tuple[str, str]]:
    """The repository's branches and tags: (name, commit), branches first."""
    got = library().HfApi(endpoint=endpoint()).list_repo_refs(repo)
    return [(r.name, r.target_commit) for r in [*got.branches, *got.tags]]


def resolve_url(repo: str, commit: str, filename: str) -> str:
    """Where a file of a commit is read: the Hub's resolve address."""
    from urllib.parse import quote

    return f"{endpoint()}/{repo}/resolve/{commit}/{quote(filename)}"
