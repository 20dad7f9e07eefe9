"""Download one dataset's official files (params `data.<dataset>.files`), verify them, place them.

Each file is kept in the dataset's downloads folder, so a rerun, or a later fetch of the same
dataset, reuses it; a file the user put there by hand is used the same way. A pinned sha256 is
checked on every use. A kept file that fails it is never deleted: it is moved aside, to
`<name>.sha256-mismatch` beside it; one this module downloaded is then downloaded again (its pin
changed since), while one placed by hand stops the run at once, saying where it went (the network is
not tried: the user meant that copy to be used, and is likely offline). Each origin is tried
`download.retries` times with exponential backoff, then each mirror; when all fail, the error says
what to fetch by hand and where to put it.

Partial downloads survive an interrupted run: HTTP files grow in `<name>.part` and continue with a
Range request, gdown keeps its own `<name><8 random characters>.part` next to the file, and folders
are filled in `<name>.part/` (`<name>.archive_org.part/` for the archive.org mirror), then renamed.
`DOWNLOADED.json` in the downloads folder records what this module fetched, which is how a file
placed by hand is told from an earlier download.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Callable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import quote

import gdown
import gdown.exceptions
import requests
import tenacity
from tqdm import tqdm

from ..errors import DownloadError
from ..params import DatasetParams, DownloadParams, SourceFile
from .extract import archive_format, unpack_archive

MANIFEST = "DOWNLOADED.json"
T = TypeVar("T")
_CHUNK = 1 << 20
# Files archive.org adds to every item about the item itself; not part of the dataset.
_ARCHIVE_ORG_EXTRAS = ("_meta.xml", "_files.xml", "_meta.sqlite", "_archive.torrent")


class ChecksumError(DownloadError):
    """A file's content is not what its pinned sha256 (or archive.org's md5) says."""


class _Truncated(DownloadError):
    """A transfer ended before the announced length: worth another attempt."""


# What makes one origin fail and the next one be tried. Anything else (a full disk, a bug) stops the run.
_SOURCE_ERRORS = (requests.RequestException, gdown.exceptions.DownloadError, DownloadError)


def sha256_of(path: Path) -> str:
    return _digest(path, hashlib.sha256())


def fetch_dataset(name: str, dataset: DatasetParams, downloads: Path, out: Path, *, settings: DownloadParams,
                  progress: bool) -> list[dict]:
    """Make sure every file of `dataset` is in `downloads` and verified, then place it into `out`
    (copied, or unpacked per the file's `unpack`). Returns, per file, where it came from."""
    sources = []
    for file in dataset.files:
        sources.append(fetch_file(name, file, downloads, settings=settings, progress=progress,
                                  pin_at=f"data.{name}.files"))
        _place(name, file, downloads / file.name, out, settings)
    return sources


def fetch_file(name: str, file: SourceFile, downloads: Path, *, settings: DownloadParams, progress: bool,
               pin_at: str, brief: bool = False) -> dict:
    """Make sure `file` is at `downloads / file.name` and verified (kept, placed by hand, or downloaded);
    → {"name", "origin", "sha256", "bytes"}. `name` prefixes messages; `pin_at` is where params.yaml lists
    the file (the hint to pin its hash). `brief`: when every source fails, a two-line message (what to put
    where) instead of one that repeats each source's error (each is printed as it happens either way)."""
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / file.name
    found = _reusable(name, file, target, _manifest(downloads), pin_at)
    if found:
        origin, digest = found
    else:
        origin, digest = _download(name, file, target, settings, progress, brief)
        _remember(downloads, file.name, origin, digest)
    if digest and not file.sha256:
        _say(f'{name}: {file.name} sha256 {digest} (not pinned: add "sha256: {digest}" to '
             f'{pin_at} in params.yaml to pin it)')
    return {"name": file.name, "origin": origin, "sha256": digest, "bytes": _size(target)}


# --- what is already there ---------------------------------------------------------------------

def _reusable(name: str, file: SourceFile, target: Path, manifest: dict,
              pin_at: str) -> tuple[str, str | None] | None:
    """(origin, sha256) of a usable copy already at `target`; None when it must be downloaded. A copy that
    fails its pinned sha256 is moved aside: one placed by hand then stops the run (ChecksumError)."""
    if not target.exists():
        return None
    if target.is_dir() != file.is_folder:
        should = "a folder" if file.is_folder else "a file"
        raise DownloadError(f"{name}: {target.resolve()} should be {should}; move it away and run again")
    if file.is_folder:
        if not any(target.iterdir()):
            return None
        return ("earlier download" if file.name in manifest else "placed by hand"), None
    digest = sha256_of(target)
    earlier = manifest.get(file.name, {}).get("sha256") == digest
    if file.sha256 and digest != file.sha256:
        aside = _move_aside(target)
        mismatch = (f"{name}: {target.resolve()} does not match the sha256 pinned in {pin_at} (expected "
                    f"{file.sha256}, got {digest}): moved it to {aside}")
        if not earlier:
            raise ChecksumError(f"{mismatch}; put the right file at {target.resolve()}, or run again to "
                                f"download it")
        _say(f"{mismatch} (downloaded by an earlier run, before the pin changed?); downloading it again")
        return None
    return ("earlier download" if earlier else "placed by hand"), digest


def _move_aside(path: Path) -> Path:
    """Renames `path` to a free `<name>.sha256-mismatch` (then `-2`, `-3`, ...) beside it; → the new path.
    A rename, not a copy: instant, and no second copy of a large archive."""
    aside = path.with_name(path.name + ".sha256-mismatch")
    n = 1
    while os.path.lexists(aside):
        n += 1
        aside = path.with_name(f"{path.name}.sha256-mismatch-{n}")
    path.rename(aside)
    return aside.resolve()


def _manifest(downloads: Path) -> dict:
    path = downloads / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _remember(downloads: Path, name: str, origin: str, digest: str | None) -> None:
    manifest = {**_manifest(downloads), name: {"origin": origin, "sha256": digest}}
    tmp = downloads / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(downloads / MANIFEST)


# --- downloading -------------------------------------------------------------------------------

def _download(name: str, file: SourceFile, target: Path, settings: DownloadParams,
              progress: bool, brief: bool = False) -> tuple[str, str | None]:
    """Fetch `file` into `target` from its origin, else its mirrors; returns (origin, sha256)."""
    failures: list[tuple[str, Exception]] = []
    for origin, fetch in _sources(file, settings, progress):
        try:
            fetch(target)
            return origin, (None if file.is_folder else _verified(file, target, origin))
        except _SOURCE_ERRORS as err:
            _say(f"{name}: {file.name}: {origin} failed: {err}")
            failures.append((origin, err))
    raise _unavailable(name, file, target, failures, brief)


def _sources(file: SourceFile, settings: DownloadParams, progress: bool) -> list[tuple[str, Callable[[Path], None]]]:
    """(where, how) for the origin, then each mirror, in the order they are tried."""
    opts = dict(settings=settings, progress=progress)
    if file.url:
        sources = [(file.url, partial(_http_file, file.url, **opts))]
    elif file.gdrive:
        sources = [(f"https://drive.google.com/uc?id={file.gdrive}", partial(_gdrive_file, file.gdrive, **opts))]
    elif file.folder_file:
        sources = [(f"https://drive.google.com/drive/folders/{file.gdrive_folder} (its file {file.folder_file})",
                    partial(_gdrive_folder_file, file.gdrive_folder, file.folder_file, **opts))]
    else:
        sources = [(f"https://drive.google.com/drive/folders/{file.gdrive_folder}",
                    partial(_gdrive_folder, file.gdrive_folder, **opts))]
    sources += [(url, partial(_http_file, url, **opts)) for url in file.mirrors]
    if file.archive_org:
        page = f"{settings.archive_org_base.rstrip('/')}/details/{file.archive_org}"
        sources.append((page, partial(_archive_org_folder, file.archive_org, **opts)))
    return sources


def _retried(settings: DownloadParams, action: Callable[[], T]) -> T:
    """`action()`, run again after a transient failure: `retries` attempts, waits `backoff`, 2x`backoff`, ..."""
    def announce(state: tenacity.RetryCallState) -> None:
        _say(f"  attempt {state.attempt_number}/{settings.retries} failed ({state.outcome.exception()}); "
             f"retrying in {state.next_action.sleep:.1f}s")
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(settings.retries),
                                 wait=tenacity.wait_exponential(multiplier=settings.backoff),
                                 retry=tenacity.retry_if_exception(_transient), before_sleep=announce, reraise=True)
    return retrying(action)


def _transient(err: BaseException) -> bool:
    if isinstance(err, requests.HTTPError):
        status = err.response.status_code if err.response is not None else 0
        return status in (408, 429) or status >= 500
    if isinstance(err, gdown.exceptions.FileURLRetrievalError):
        return False   # Drive refused the link (permissions, quota): seconds later it refuses again
    return isinstance(err, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                            gdown.exceptions.DownloadError, _Truncated))


def _http_file(url: str, target: Path, *, settings: DownloadParams, progress: bool) -> None:
    _retried(settings, lambda: _http_get(url, target, settings.timeout, progress))


def _http_get(url: str, target: Path, timeout: float, progress: bool) -> None:
    """One attempt to GET `url` into `target`, growing `<target>.part`, continued if a run left one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    # Identity encoding: a transparently decoded gzip body would make the byte offsets wrong.
    headers = {"Accept-Encoding": "identity"} | ({"Range": f"bytes={offset}-"} if offset else {})
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        continues = (response.status_code == 206
                     and response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"))
        if offset and (response.status_code == 416 or (response.status_code == 206 and not continues)):
            part.unlink()   # the server cannot continue this `.part` (complete, or of another file)
            return _http_get(url, target, timeout, progress)
        response.raise_for_status()
        if not continues:
            offset = 0      # the server ignored the Range and sends the whole file
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length and length.isdigit() else None
        with open(part, "ab" if offset else "wb") as f, \
                tqdm(total=expected, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=target.name, disable=not progress, leave=False) as bar:
            for chunk in response.iter_content(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if expected is not None and size != expected:
        raise _Truncated(f"{url}: got {size} of {expected} bytes")
    part.replace(target)


def _gdrive_file(file_id: str, target: Path, *, settings: DownloadParams, progress: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # gdown's own retries stay off (retries=0): ours count attempts and log them. With resume=True
    # gdown continues its `<name>XXXXXXXX.part` from an interrupted run.
    _retried(settings, lambda: gdown.download(id=file_id, output=str(target), quiet=not progress,
                                              resume=True, timeout=settings.timeout))


def _gdrive_folder(folder_id: str, target: Path, *, settings: DownloadParams, progress: bool) -> None:
    staging = target.with_name(target.name + ".part")
    # gdown 6 lists folders of any size (it has no `remaining_ok` any more); it downloads every file
    # it can, then raises a DownloadError naming those it could not. resume=True skips the files a
    # previous attempt completed.
    files = _retried(settings, lambda: gdown.download_folder(
        id=folder_id, output=str(staging), quiet=not progress, resume=True, timeout=settings.timeout))
    if not files:
        raise DownloadError("the Drive folder lists no files")
    _publish(staging, target)


def _gdrive_folder_file(folder_id: str, name: str, target: Path, *, settings: DownloadParams, progress: bool) -> None:
    """The one file `name` of a Drive folder: the folder is listed (gdown, nothing downloaded), then that file
    is fetched by its id as any Drive file."""
    listing = _retried(settings, lambda: gdown.download_folder(
        id=folder_id, quiet=not progress, skip_download=True, timeout=settings.timeout))
    found = [f for f in listing or [] if PurePosixPath(f.path).name == name]
    if len(found) != 1:
        listed = sorted(PurePosixPath(f.path).as_posix() for f in listing or [])
        raise DownloadError(f"the Drive folder lists {len(found)} files named {name!r} (expected one; it lists "
                            f"{listed or 'nothing'})")
    _gdrive_file(found[0].id, target, settings=settings, progress=progress)


def _archive_org_folder(item: str, target: Path, *, settings: DownloadParams, progress: bool) -> None:
    """Every original file of the archive.org item, each checked against the md5 archive.org lists."""
    base = settings.archive_org_base.rstrip("/")
    files = _archive_org_files(base, item, settings)
    staging = target.with_name(target.name + ".archive_org.part")
    for entry in files:
        path = staging / _inside(entry["name"], item)
        md5 = entry.get("md5")
        if path.is_file() and md5 and _digest(path, hashlib.md5()) == md5:
            continue   # completed by an earlier attempt
        url = f"{base}/download/{quote(item)}/{quote(entry['name'])}"
        _http_file(url, path, settings=settings, progress=progress)
        if md5 and (got := _digest(path, hashlib.md5())) != md5:
            path.unlink()
            raise ChecksumError(f"{url}: md5 mismatch (archive.org lists {md5}, got {got})")
    _publish(staging, target)


def _archive_org_files(base: str, item: str, settings: DownloadParams) -> list[dict]:
    def get() -> dict:
        response = requests.get(f"{base}/metadata/{item}", timeout=settings.timeout)
        response.raise_for_status()
        return response.json()
    listing = _retried(settings, get)
    files = [f for f in listing.get("files", [])
             if f.get("source") == "original" and not f.get("name", "").endswith(_ARCHIVE_ORG_EXTRAS)]
    if not files:   # archive.org answers {} for an item that does not exist
        raise DownloadError(f"archive.org item {item!r} lists no original files")
    return files


def _inside(name: str, item: str) -> PurePosixPath:
    """A file name from archive.org's listing, refused if it would leave the folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise DownloadError(f"archive.org item {item!r} lists the unsafe file name {name!r}")
    return path


def _publish(staging: Path, target: Path) -> None:
    if target.is_dir():
        target.rmdir()   # an empty folder left there (a non-empty one would have been reused)
    staging.replace(target)


def _verified(file: SourceFile, target: Path, origin: str) -> str:
    """The sha256 of a fresh download; a mismatch with the pin deletes it."""
    digest = sha256_of(target)
    if file.sha256 and digest != file.sha256:
        target.unlink()
        raise ChecksumError(f"{file.name} from {origin}: sha256 mismatch (expected {file.sha256}, "
                            f"got {digest}); the downloaded file was deleted")
    return digest


def _unavailable(name: str, file: SourceFile, target: Path, failures: list[tuple[str, Exception]],
                 brief: bool = False) -> DownloadError:
    pinned = f" (sha256 {file.sha256})" if file.sha256 else ""
    if brief:
        # Each source's error was printed when it failed: say only what to put where.
        put = "its files into the folder" if file.is_folder else "it at"
        message = (f"{name}: could not download {file.name} ({len(failures)} source(s) failed, errors above). "
                   f"Fetch it by hand from {failures[0][0]}\n"
                   f"and put {put} {target.resolve()}, then run again: the run verifies it{pinned} and uses it.")
    else:
        tried = "\n".join(f"  - {origin}\n{textwrap.indent(str(err), '      ')}" for origin, err in failures)
        if file.is_folder:
            put = f"put the folder's files into the folder\n  {target.resolve()}"
        else:
            put = f"put it at\n  {target.resolve()}"
        message = (f"{name}: could not download {file.name}. Tried, in order (last error last):\n{tried}\n"
                   f"Fetch it by hand from one of those addresses and {put}\n"
                   f"then run again: the run verifies it{pinned} and uses it.")
    # A wrong checksum at the last source says more than "could not download": keep its class.
    return (ChecksumError if isinstance(failures[-1][1], ChecksumError) else DownloadError)(message)


# --- placing into the dataset root -------------------------------------------------------------

def _place(name: str, file: SourceFile, source: Path, out: Path, settings: DownloadParams) -> None:
    limits = dict(strip=file.strip, max_gb=settings.max_unpacked_gb, max_ratio=settings.max_unpack_ratio)
    if file.unpack is None:
        dest = out / file.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, dest)
    elif not source.is_dir():
        if archive_format(source) is None:
            # Typically a web page saved in place of the file, or the wrong file placed by hand.
            raise DownloadError(f"{name}: {source.resolve()} is not a zip or tar archive, yet data.{name}.files "
                                f"says to unpack it: delete it and run again to download it, or fix its `unpack`")
        unpack_archive(source, out / file.unpack, **limits)
    else:
        # A folder's archives are unpacked and its other files copied, keeping its sub-folders.
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            into = out / file.unpack / path.parent.relative_to(source)
            if archive_format(path):
                unpack_archive(path, into, **limits)
            else:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into / path.name)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _digest(path: Path, hasher) -> str:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
