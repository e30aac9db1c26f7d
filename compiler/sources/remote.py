"""Files read in place by byte ranges: a checkpoint's shards on the Hugging
Face Hub (``hf:org/name@revision``, through huggingface_hub) or in an object
store or on a web server (``s3://``, ``gs://``, ``https://``, through fsspec).

A :class:`Blob` names one such file: where it is read, its size and its
content's identity (the Hub's LFS sha256, a store's ETag), and how a message
names it (never with a credential: those stay in the libraries' usual
places, read by them when a request is made). A :class:`Reader` reads byte
ranges of blobs: each response is checked to be the range asked, of the
content named (a file replaced mid-read is said so, never summed), and a
transient failure (a timeout, a dropped connection, a 5xx or 429, a short
body) is retried a few times with backoff; every failure ends as a
:class:`RemoteError` saying what happened and what to do.

Both are plain objects: a blob is its strings, a reader makes its clients
again in each process (pickled, it is sent without them), so another
process (a worker) reads the same blobs from the same names.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import hub

#: The schemes read through fsspec, and the extra that installs each one's library.
STORES = {"s3://": "s3", "gs://": "gcs", "gcs://": "gcs", "https://": "https",
          "http://": "https"}
#: Attempts at a transient failure, and the first wait (doubled each time).
TRIES, BACKOFF = 4, 0.2

T = TypeVar("T")


def is_store(written: str) -> bool:
    return written.startswith(tuple(STORES))


def clean(url: str) -> str:
    """A URL as a message may show it: no user, password or query (a signed
    URL's signature is its query)."""
    url = re.sub(r"^([a-z0-9]+://)[^/@]*@", r"\1", url)
    return url.split("?", 1)[0].split("#", 1)[0]


class RemoteError(Exception):
    """A remote file that could not be read: what happened, and what to do."""

    def __init__(self, message: str, hint: str | None = None, transient: bool = False,
                 unreachable: bool = False):
        super().__init__(message)
        self.message, self.hint, self.transient = message, hint, transient
        #: the server could not be reached at all (no network, no such host)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Blob:
    """A file read in place: ``kind`` "hf" (``url``: the Hub's resolve address
    at a commit) or "store" (``url``: what fsspec opens), its size, its
    content's identity (``sha256:...``, ``etag:...``) and how messages name it."""

    kind: str
    url: str
    size: int
    digest: str
    shown: str

    @property
    def name(self) -> str:
        return self.shown.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return "." + self.name.rsplit(".", 1)[-1] if "." in self.name else ""

    def __str__(self) -> str:
        return self.shown


class Reader:
    """Byte ranges of blobs, from any thread; ``transferred`` counts the bytes
    received. Pickled, it carries no client: each process makes its own."""

    def __init__(self) -> None:
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.transferred = 0

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def read(self, blob: Blob, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` of ``blob``; RemoteError otherwise."""
        if end <= start:
            return b""
        once = _hub_range if blob.kind == "hf" else self._store_range
        body = retried(lambda: once(blob, start, end), blob.shown)
        with self._lock:
            self.transferred += len(body)
        return body

    def _store_range(self, blob: Blob, start: int, end: int) -> bytes:
        fs, path = self.store(blob.url)
        try:
            body = bytes(_conditional(fs, path, blob, start, end))
        except Exception as e:
            raise explained(e, blob.shown) from None
        if len(body) != end - start:
            raise RemoteError(f"{blob.shown}: asked for bytes {start:,} to {end:,}, received "
                              f"{len(body):,}", transient=True)
        return body

    def store(self, url: str) -> tuple[Any, str]:
        """The fsspec filesystem for ``url`` (one per scheme) and its path there."""
        scheme = url.split("://", 1)[0]
        with self._lock:
            if scheme not in self._stores:
                self._stores[scheme] = filesystem(url)
            fs = self._stores[scheme]
        return fs, (url if scheme in ("http", "https") else fs._strip_protocol(url))


def _conditional(fs: Any, path: str, blob: Blob, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` of a store's file, asked only of the content
    ``blob`` was planned with: each request carries its ETag as If-Match
    (S3 and HTTP servers answer 412 when the file is no longer that
    content), so a file replaced between its header and its tensors is
    found, never summed. Where no strong ETag is known (or the store's
    library takes no condition: GCS), a plain range read."""
    tag = blob.digest.removeprefix("etag:")
    strong = blob.digest.startswith("etag:") and ":" not in tag and not tag.startswith("W/")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if strong and protocol in ("s3", "s3a"):
        from fsspec.asyn import sync

        bucket, key, _ = fs.split_path(path)

        async def get() -> bytes:
            # s3fs's own async call (its sync cat_file takes no condition)
            resp = await fs._call_s3("get_object", Bucket=bucket, Key=key,
                                     Range=f"bytes={start}-{end - 1}", IfMatch=f'"{tag}"')
            try:
                return bytes(await resp["Body"].read())
            finally:
                resp["Body"].close()

        return sync(fs.loop, get)  # type: ignore[no-any-return]
    if strong and protocol in ("http", "https"):
        return bytes(fs.cat_file(path, start=start, end=end, headers={"If-Match": f'"{tag}"'}))
    return bytes(fs.cat_file(path, start=start, end=end))


def filesystem(url: str) -> Any:
    """fsspec's filesystem for ``url``'s scheme, with the user's credentials
    from its library's usual places; RemoteError naming the extra to install."""
    scheme = url.split("://", 1)[0]
    extra = STORES.get(scheme + "://", scheme)
    try:
        import fsspec

        return fsspec.filesystem(scheme)
    except (ImportError, ValueError) as e:
        raise RemoteError(f"reading {scheme}:// needs a library that is not installed "
                          f"({str(e)[:120]})", f"pip install 'figspec[{extra}]'") from None


def retried(call: Callable[[], T], what: str) -> T:
    """``call()``, again after a transient failure (TRIES attempts in all,
    waiting BACKOFF, then twice as long each time); RemoteError when it fails."""
    for attempt in range(TRIES):
        try:
            return call()
        except Exception as e:
            error = explained(e, what)
            if not error.transient or attempt == TRIES - 1:
                if error.transient:
                    error.message += f" ({TRIES} attempts)"
                raise error from None
            time.sleep(BACKOFF * 2 ** attempt)
    raise AssertionError("unreachable")  # pragma: no cover


# -- the Hub -------------------------------------------------------------------------

def _hub_range(blob: Blob, start: int, end: int) -> bytes:
    """One range request to the Hub, with the user's token (huggingface_hub's
    headers); the response must be that range of the content named."""
    hf = hub.library()
    headers = {**hf.utils.build_hf_headers(), "Range": f"bytes={start}-{end - 1}",
               "Accept-Encoding": "identity"}
    with hf.get_session().stream("GET", blob.url, headers=headers,
                                 timeout=hub.timeout()) as r:
        whole = r.status_code == 200 and start == 0 and end == blob.size
        if r.status_code != 206 and not whole:
            if r.status_code == 200:
                raise RemoteError(f"{blob.shown}: the server sent the whole file for a byte "
                                  "range; figspec reads ranges only",
                                  "read it from a server that answers Range requests, or "
                                  "download it (`hf download`) and read the hub cache")
            raise _status_error(r.status_code, blob.shown)
        _same_content(blob, r)
        body = bytearray()
        for piece in r.iter_bytes():
            body += piece
            if len(body) > end - start:
                break
    if len(body) != end - start:
        raise RemoteError(f"{blob.shown}: asked for bytes {start:,} to {end:,}, received "
                          f"{len(body):,}", transient=len(body) < end - start)
    return bytes(body)


def _same_content(blob: Blob, response: Any) -> None:
    """RemoteError where the Hub says the file it sent is not the content named
    (its X-Linked-Etag, or ETag when not redirected, is the LFS sha256)."""
    if not blob.digest.startswith("sha256:"):
        return
    said = [h.headers.get("x-linked-etag") for h in [*response.history, response]]
    if not response.history:
        said.append(response.headers.get("etag"))
    for tag in said:
        tag = (tag or "").removeprefix("W/").strip('"')
        if len(tag) == 64 and tag != blob.digest[7:]:
            raise RemoteError(f"{blob.shown} changed while it was read (its content hash is "
                              f"now {tag[:12]}, was {blob.digest[7:19]})",
                              "build again: the new content is read from the start")


def hub_revision(repo: str, revision: str, what: str
                 ) -> tuple[str, list[tuple[str, int, str]]]:
    """The commit and files of a Hub revision (see :func:`hub.revision_info`),
    retried and explained (``what``: how to name it)."""
    return retried(lambda: hub.revision_info(repo, revision), what)


def hub_refs(repo: str) -> list[tuple[str, str]]:
    return retried(lambda: hub.refs(repo), f"hf:{repo}")


def hub_small(url: str, what: str, limit: int) -> bytes:
    """A small file of the Hub (an index) read whole, at most ``limit`` bytes."""
    def once() -> bytes:
        hf = hub.library()
        with hf.get_session().stream("GET", url, headers=hf.utils.build_hf_headers(),
                                  timeout=hub.timeout()) as r:
            if r.status_code != 200:
                raise _status_error(r.status_code, what)
            body = bytearray()
            for piece in r.iter_bytes():
                body += piece
                if len(body) > limit:
                    raise RemoteError(f"{what} is larger than {limit:,} bytes")
        return bytes(body)

    return retried(once, what)


# -- what went wrong, said plainly ---------------------------------------------------

_LOGIN = ("log in: `hf auth login`, or set HF_TOKEN to a token that may read it "
          "(and accept its terms on its page if it is gated)")


def _changed(what: str) -> RemoteError:
    return RemoteError(f"{what} changed while it was read (it is no longer the content its "
                       "header was read from)", "build again: the new content is read from "
                       "the start")


#: How to give each store's library credentials, in the places it reads them.
_STORE_LOGIN = {
    "s3": "give boto credentials that may read it, where it looks for them: AWS_PROFILE "
          "(a profile of ~/.aws/credentials or ~/.aws/config, `aws configure` or "
          "`aws sso login`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "gs": "give Google credentials that may read it: `gcloud auth application-default "
          "login`, or GOOGLE_APPLICATION_CREDENTIALS naming a key file",
}
_STORE_LOGIN["gcs"] = _STORE_LOGIN["gs"]


def _login(what: str) -> str:
    """How to be let in: the Hub's login for the Hub, a store's credentials for
    a store; a web server gets no credentials from figspec."""
    scheme = what.split("://", 1)[0] if "://" in what else "hf"
    if scheme in ("http", "https"):
        return ("figspec sends a web server no credentials: name a signed address "
                "(its query is sent, never shown), or download the file and name it here")
    return _STORE_LOGIN.get(scheme, _LOGIN)


def _status_error(status: int, what: str) -> RemoteError:
    if status == 412:  # If-Match: not the content planned with
        return _changed(what)
    if status == 404:
        return RemoteError(f"{what} is not there (HTTP 404)", "check the name and revision")
    if status in (401, 403):
        return RemoteError(f"{what}: access refused (HTTP {status})", _login(what))
    if status == 429 or status >= 500:
        return RemoteError(f"{what}: the server answered HTTP {status}", "try again later",
                           transient=True)
    return RemoteError(f"{what}: the server answered HTTP {status}")


def explained(e: BaseException, what: str) -> RemoteError:
    """Any failure of a remote read as a RemoteError (transient or not)."""
    if isinstance(e, RemoteError):
        return e
    name = type(e).__name__
    status = getattr(getattr(e, "response", None), "status_code", None)
    if not isinstance(status, int):  # aiohttp's errors (fsspec's HTTP) hold it themselves
        status = getattr(e, "status", None)
    if isinstance(e, FileNotFoundError) and not isinstance(status, int):
        # fsspec's HTTP says FileNotFoundError for any refused HEAD/GET: its cause knows why
        status = getattr(e.__cause__, "status", None)
    if name == "FileExpired" or (isinstance(e, OSError) and "pre-condition" in str(e)):
        return _changed(what)  # s3fs's word for a 412 to an If-Match
    if isinstance(e, hub.Unimportable):
        return RemoteError(f"{what}: huggingface_hub cannot be imported ({clean(str(e))[:160]})",
                           "it reads the HF_* environment variables when it is imported: "
                           "correct the one it names (HF_HUB_DOWNLOAD_TIMEOUT in whole seconds)")
    if name in ("RepositoryNotFoundError", "GatedRepoError"):
        return RemoteError(f"{what}: the repository is not on the Hub at {hub.endpoint()}, "
                           "or it is private or gated", _LOGIN)
    if name == "RevisionNotFoundError":
        return RemoteError(f"{what}: no such revision on the Hub",
                           "name a branch, a tag or a commit of the repository")
    if name in ("RepositoryNotFoundError", "EntryNotFoundError",
                "RemoteEntryNotFoundError") or (isinstance(e, FileNotFoundError)
                                                 and status in (None, 404)):
        return RemoteError(f"{what} is not there", "check the name and revision")
    if isinstance(status, int):
        return _status_error(status, what)
    if isinstance(e, PermissionError):
        return RemoteError(f"{what}: access refused (the store answered 403)",
                           _STORE_LOGIN.get(what.split("://", 1)[0],
                                            "give the store's library credentials where it "
                                            "looks for them"))
    if name == "TooManyRedirects":
        return RemoteError(f"{what}: too many redirects", "check HF_ENDPOINT or the address")
    if name == "OfflineModeIsEnabled":
        return RemoteError(f"{what}: HF_HUB_OFFLINE is set", "unset it to read from the Hub")
    if "Timeout" in name or isinstance(e, TimeoutError):
        return RemoteError(f"{what}: no answer within {hub.timeout():g} s", "try again, or "
                           "raise HF_HUB_DOWNLOAD_TIMEOUT", transient=True)
    if name in ("ConnectError", "ReadError", "RemoteProtocolError", "NetworkError",
                "ClientConnectorError", "ServerDisconnectedError") or \
            isinstance(e, ConnectionError):
        return RemoteError(f"{what}: cannot reach the server ({name})",
                           "check the network, or HF_ENDPOINT", unreachable=True)
    return RemoteError(f"{what}: {name}: {clean(str(e))[:200]}")
