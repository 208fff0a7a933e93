"""GGUF files from the Hugging Face Hub: ``router pull`` downloads and verifies, a policy's
``gguf: hf:...`` finds the verified file in the cache, offline.

A reference is ``hf:OWNER/NAME[@REVISION]/PATH/IN/REPO.gguf``: the repo id is the first two path
segments (as on the Hub, ``owner/name``), everything after them is the file's path in the repo;
``@REVISION`` (a branch, tag or commit; default ``main``) follows the repo id, as in
``huggingface_hub``'s ``hf://`` paths. A revision containing ``/`` (``refs/pr/1``) is written
URL-encoded (``refs%2Fpr%2F1``).

Downloading uses ``huggingface_hub.hf_hub_download`` (its cache, ``HF_HOME`` / ``HF_HUB_CACHE``,
``HF_ENDPOINT``, progress bar, a dropped connection resumed with a Range request). The client
checks only the size; :func:`pull` then hashes the file and compares it with the sha256 the Hub
reports for the LFS object (the ``X-Linked-Etag`` of the resolve URL, read with
``get_hf_file_metadata``). A mismatch removes the file and raises :class:`HubChecksumError`; a
match writes a marker (path, sha256, size, mtime) under ``HF_HOME/policy-router/verified``.

:func:`cached_gguf` never touches the network: ``try_to_load_from_cache`` plus that marker. A
file that is missing, unverified or changed since it was verified is not used; the model is
excluded with ``not downloaded: run `router pull ...```.

Example:
    >>> ref = parse_ref("hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf")
    >>> ref.repo_id, ref.filename, ref.revision
    ('TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF', 'tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf', 'main')
    >>> pull(ref)          # network: downloads, verifies, returns the cached path
    >>> cached_gguf(ref)   # offline: that path, or GgufNotDownloadedError
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from router.errors import RouterError
from router.providers.llama_runtime import GgufUnavailableError

PREFIX = "hf:"
DEFAULT_REVISION = "main"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class HubError(RouterError):
    """A download from the Hub failed (unreachable, offline, not found, ...); the message says why."""


class HubChecksumError(HubError):
    """The downloaded file's sha256 differs from the one the Hub reports; the file was removed."""


class GgufNotDownloadedError(GgufUnavailableError):
    """A ``gguf: hf:...`` file is not in the cache (or not verified): run ``router pull``."""


@dataclass(frozen=True)
class HubRef:
    """A file in a Hub model repo at a revision."""

    repo_id: str
    filename: str
    revision: str = DEFAULT_REVISION

    def __str__(self) -> str:
        rev = "" if self.revision == DEFAULT_REVISION else "@" + self.revision.replace("/", "%2F")
        return f"{PREFIX}{self.repo_id}{rev}/{self.filename}"

    def pull_command(self) -> str:
        """The command that downloads this file."""
        for alias, ref in ALIASES.items():
            if ref == self:
                return f"router pull {alias}"
        rev = "" if self.revision == DEFAULT_REVISION else f" --revision {self.revision}"
        return f"router pull {self.repo_id} {self.filename}{rev}"


ALIASES = {
    "tinyllama": HubRef("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"),
}
"""Short names ``router pull`` accepts."""


def make_ref(repo_id: str, filename: str, revision: str | None = None) -> HubRef:
    """A checked :class:`HubRef`; ``ValueError`` for a malformed repo id, file path or revision."""
    owner, _, name = repo_id.partition("/")
    if not (_SEGMENT.fullmatch(owner) and _SEGMENT.fullmatch(name)):
        raise ValueError(f"a Hub repo id is OWNER/NAME, got {repo_id!r}")
    parts = filename.split("/")
    if not filename or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise ValueError(f"not a relative file path in a repo: {filename!r}")
    revision = revision or DEFAULT_REVISION
    if any(p in ("", ".", "..") for p in revision.split("/")) or any(c in revision for c in "\\\x00 "):
        raise ValueError(f"not a revision: {revision!r}")
    return HubRef(repo_id, filename, revision)


def parse_ref(value: str) -> HubRef:
    """``hf:OWNER/NAME[@REVISION]/PATH`` → :class:`HubRef` (``ValueError`` when malformed)."""
    if not value.startswith(PREFIX):
        raise ValueError(f"a Hub reference starts with {PREFIX!r}: {value!r}")
    parts = value[len(PREFIX):].split("/", 2)
    if len(parts) < 3:
        raise ValueError(f"a Hub reference is hf:OWNER/NAME[@REVISION]/FILE, got {value!r}")
    owner, name, filename = parts
    name, _, revision = name.partition("@")
    return make_ref(f"{owner}/{name}", filename, unquote(revision) if revision else None)


# --------------------------------------------------------------------------- locations


def hf_home() -> Path:
    """``HF_HOME`` as it is now (``huggingface_hub`` reads it once, at import)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")))


def hub_cache() -> Path:
    """The Hub cache folder: ``HF_HUB_CACHE``, else ``HF_HOME/hub``; resolved, as ``hf_hub_download``
    resolves it (the verification marker is keyed by the path it returns)."""
    return Path(os.path.expanduser(os.environ.get("HF_HUB_CACHE") or str(hf_home() / "hub"))).resolve()


def _marker_path(pointer: str) -> Path:
    digest = hashlib.sha256(pointer.encode("utf-8")).hexdigest()[:32]
    return hf_home() / "policy-router" / "verified" / f"{digest}.json"


def _stamp(path: str) -> dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_verified(pointer: str) -> bool:
    try:
        marker = json.loads(_marker_path(pointer).read_text("utf-8"))
        return bool(marker.get("path") == pointer and marker.get("stamp") == _stamp(pointer))
    except (OSError, ValueError, AttributeError):
        return False


# --------------------------------------------------------------------------- offline lookup


def cached_gguf(ref: HubRef | str) -> Path:
    """The verified cached file for ``ref``; no network. Raises :class:`GgufNotDownloadedError`."""
    if isinstance(ref, str):
        try:
            ref = parse_ref(ref)
        except ValueError as err:
            raise GgufUnavailableError(str(err)) from None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise GgufUnavailableError("huggingface_hub is not installed (pip install huggingface_hub)") from None
    found = try_to_load_from_cache(ref.repo_id, ref.filename, cache_dir=str(hub_cache()), revision=ref.revision)
    if not isinstance(found, str):
        raise GgufNotDownloadedError(f"not downloaded: run `{ref.pull_command()}`")
    if not _is_verified(found):
        raise GgufNotDownloadedError(f"not verified (partial, changed or not pulled by the router): "
                                     f"run `{ref.pull_command()}`")
    return Path(found)


# --------------------------------------------------------------------------- download


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _remove_download(pointer: str) -> None:
    """Remove a bad file from the cache: its snapshot entry and the blob it points to."""
    blob = os.path.realpath(pointer)
    for path in {pointer, blob}:
        Path(path).unlink(missing_ok=True)


def _expected_sha256(ref: HubRef, endpoint: str | None) -> tuple[str, str]:
    """The LFS sha256 and the commit the Hub reports for ``ref`` (one HEAD request)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    meta = get_hf_file_metadata(hf_hub_url(ref.repo_id, ref.filename, revision=ref.revision, endpoint=endpoint),
                                endpoint=endpoint)
    etag = (meta.etag or "").lower()
    if not _SHA256.fullmatch(etag) or not meta.commit_hash:
        raise HubError(f"the Hub reports no sha256 for {ref} (not an LFS file?): cannot verify it")
    return etag, meta.commit_hash


def pull(ref: HubRef, *, progress: bool = True) -> Path:
    """Download ``ref`` into the Hub cache (or find it there), verify its sha256 against the
    Hub's, mark it verified and return its path. :class:`HubChecksumError` on a mismatch (the
    file is removed), :class:`HubError` when the Hub cannot be reached or has no such file."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise HubError(f"HF_HUB_OFFLINE is set: cannot download {ref}")
    import huggingface_hub
    from httpx2 import HTTPError  # huggingface_hub's HTTP client
    from tqdm import tqdm

    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or None
    try:
        expected, commit = _expected_sha256(ref, endpoint)
        pointer = huggingface_hub.hf_hub_download(
            ref.repo_id, ref.filename, revision=ref.revision, cache_dir=str(hub_cache()), endpoint=endpoint,
            tqdm_class=None if progress else functools.partial(tqdm, disable=True))  # type: ignore[arg-type]
    except (OSError, ValueError, HTTPError) as err:  # unreachable, offline, 404, size mismatch (HfHubHTTPError is an OSError)
        raise HubError(f"cannot download {ref} from {endpoint or 'the Hugging Face Hub'}: "
                       f"{type(err).__name__}: {_first_line(err)}") from None
    if f"{os.sep}{commit}{os.sep}" not in pointer:
        raise HubError(f"{ref.revision} moved to another commit during the download of {ref}: run the pull again")
    actual = file_sha256(pointer)
    if actual != expected:
        _remove_download(pointer)
        _marker_path(pointer).unlink(missing_ok=True)
        raise HubChecksumError(f"sha256 mismatch for {ref}: the Hub reports {expected}, the download is {actual}; "
                               "the file was removed")
    marker = _marker_path(pointer)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"ref": str(ref), "path": pointer, "sha256": actual, "commit": commit,
                               "stamp": _stamp(pointer)}), "utf-8")
    os.replace(tmp, marker)
    return Path(pointer)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
