"""Unpack a downloaded zip or tar archive without letting any member land outside its target folder.

Every member is checked before the first byte is written, so a refused archive leaves nothing
behind. Refused: absolute names, `..` components, devices and fifos, links whose target lies
outside the folder, and members written through a link of the same archive (the classic
"symlink to /etc, then etc/passwd" trick). Tar members also pass `tarfile.data_filter`, which
resolves names against what is already on disk (an earlier archive unpacked into the same folder).

Limits (params `download.max_unpacked_gb`, `download.max_unpack_ratio`) bound what one archive may
unpack to, in all and as a multiple of the archive's own size: the sizes its members declare are
checked before anything is written, and the bytes actually written are counted while unpacking (a
hard link declares no size, yet unpacks to its target's). An archive stopped midway, by a limit or
any other error, has what it wrote removed, so nothing half-unpacked can pass for a finished one.
"""
from __future__ import annotations

import gzip
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ArchiveLimitError, CorruptArchiveError, UnsafeArchiveError

_SHOWN = 5          # offending members named in an UnsafeArchiveError
# What the zip, tar and compression modules raise for an archive that is truncated or damaged.
_DAMAGED = (zipfile.BadZipFile, tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error,
            gzip.BadGzipFile, lzma.LZMAError)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")   # a zip's first local header, or an empty zip
_CHUNK = 1 << 20
# Where the limits are set, named in a refusal so that it says what to raise.
SIZE_PARAM, RATIO_PARAM = "download.max_unpacked_gb", "download.max_unpack_ratio"


def archive_format(path: Path) -> str | None:
    """"zip" or "tar" (plain, gz, bz2 or xz) by the file's content, whatever its name; None otherwise."""
    # The zip magic is checked at the start of the file: zipfile.is_zipfile looks for a trailer
    # near the end, which a tar whose last member is a zip can also have.
    with open(path, "rb") as f:
        if f.read(4) in _ZIP_MAGIC:
            return "zip"
    return "tar" if tarfile.is_tarfile(path) else None


def unpack_archive(archive: Path, dest: Path, *, strip: int = 0, max_gb: float | None = None,
                   max_ratio: float | None = None) -> list[str]:
    """Unpack `archive` into `dest` (created if missing), dropping `strip` leading components of
    each member name, like `tar --strip-components`. Returns the relative paths written (files
    and links; folders are implied by them). At most `max_gb` GB (10^9 bytes) and `max_ratio` times
    the archive's size are unpacked (None: no limit; `fetch` passes params `download`'s)."""
    archive, dest = Path(archive), Path(dest)
    kind = archive_format(archive)
    if kind is None:
        raise ValueError(f"{archive} is not a recognised archive: expected a zip or a tar "
                         f"(plain, .gz, .bz2 or .xz) file")
    budget = _Budget(archive, dest, max_gb, max_ratio)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                return _unpack_zip(zf, archive, dest, strip, budget)
        with tarfile.open(archive, mode="r:*") as tar:
            return _unpack_tar(tar, archive, dest, strip, budget)
    except _DAMAGED as err:   # what it had unpacked is already removed (_undone_on_failure)
        raise CorruptArchiveError(f"{archive} is damaged or truncated ({type(err).__name__}: {err}); nothing of it "
                                  f"was unpacked into {dest}: delete it and run again to download it") from err


def _refuse_if_any(problems: list[str], archive: Path, dest: Path) -> None:
    if problems:
        shown = "; ".join(problems[:_SHOWN]) + ("; ..." if len(problems) > _SHOWN else "")
        raise UnsafeArchiveError(f"{archive}: refusing to unpack into {dest}: {len(problems)} unsafe "
                                 f"member(s): {shown}")


class _Budget:
    """What one archive may unpack to: `max_gb` GB in all and `max_ratio` times its own size. Checked
    against the sizes its members declare (`declared`), then against the bytes written (`wrote`)."""

    def __init__(self, archive: Path, dest: Path, max_gb: float | None, max_ratio: float | None):
        self.archive, self.dest, self.max_gb, self.max_ratio = archive, dest, max_gb, max_ratio
        self.size = archive.stat().st_size
        self.declared = self.written = 0

    def declare(self, total: int) -> None:
        self.declared = total
        if (over := self._over(total)):
            raise ArchiveLimitError(f"{self.archive}: refusing to unpack into {self.dest}: its members declare "
                                    f"{_amount(total)}, {over}; nothing was unpacked")

    def wrote(self, n: int) -> None:
        self.written += n
        if (over := self._over(self.written)):
            raise ArchiveLimitError(f"{self.archive}: stopped unpacking into {self.dest}: it unpacks to more "
                                    f"than {_amount(self.written)} (its members declare {_amount(self.declared)}), "
                                    f"{over}; what it had unpacked was removed")

    def _over(self, total: int) -> str | None:
        if self.max_gb is not None and total > self.max_gb * 1e9:
            return f"over the limit {SIZE_PARAM}: {self.max_gb:g} (GB, in params.yaml)"
        if self.max_ratio is not None and total > self.max_ratio * self.size:
            return (f"{total / max(self.size, 1):.0f} times the archive's {_amount(self.size)}, over the limit "
                    f"{RATIO_PARAM}: {self.max_ratio:g} (in params.yaml; a zip bomb?)")
        return None


def _amount(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


@contextmanager
def _undone_on_failure(dest: Path, names: Iterable[str]) -> Iterator[None]:
    """Runs the unpacking of the members `names` (relative to `dest`); if it fails, removes every path it
    was about to create at its top (`dest`, or a missing parent of it, when missing). What was there
    before stays (though a member may have overwritten a file of the same name)."""
    roots = _new_roots(dest, names)
    try:
        yield
    except BaseException:
        for path in roots:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                path.unlink()
        raise


def _new_roots(dest: Path, names: Iterable[str]) -> list[Path]:
    """The highest paths that unpacking `names` into `dest` creates: removing them undoes it."""
    if not os.path.lexists(dest):
        top = dest
        while not os.path.lexists(top.parent):
            top = top.parent
        return [top]
    exists: dict[str, bool] = {}   # per name prefix: most members share their folders
    roots = set()
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix not in exists:
                exists[prefix] = os.path.lexists(os.path.join(dest, prefix))
            if not exists[prefix]:
                roots.add(prefix)
                break
    return [dest / r for r in sorted(roots)]


def _stripped(parts: list[str], strip: int) -> list[str]:
    return [p for p in parts if p not in ("", ".")][strip:]


def _through_link(parts: list[str], links: set[str]) -> str | None:
    """The first proper prefix of `parts` that is a link of the archive: writing there would
    follow the link, wherever it points."""
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            return "/".join(parts[:i])
    return None


def _outside_on_disk(dest: Path, name: str) -> bool:
    # Symlinks already in `dest` (from an earlier archive) are followed, as the OS would.
    root = os.path.realpath(dest)
    return os.path.commonpath([root, os.path.realpath(os.path.join(root, name))]) != root


# --- tar ---------------------------------------------------------------------------------------

def _unpack_tar(tar: tarfile.TarFile, archive: Path, dest: Path, strip: int, budget: _Budget) -> list[str]:
    # Reading every header first means a compressed tar is decompressed twice; the price of
    # refusing a bad archive before anything is written.
    members = tar.getmembers()
    names = {id(m): _stripped(m.name.split("/"), strip) for m in members}
    links = {"/".join(names[id(m)]) for m in members if m.issym() or m.islnk()}
    keep, problems = [], []
    for member in members:
        parts = names[id(member)]
        if not parts:   # a leading folder removed by `strip`
            continue
        problem, renamed = _tar_problem(member, parts, links, dest, strip)
        if problem:
            problems.append(f"{member.name!r} ({problem})")
        else:
            keep.append(renamed)
    _refuse_if_any(problems, archive, dest)
    budget.declare(sum(m.size for m in keep if m.isreg()))
    with _undone_on_failure(dest, [m.name for m in keep]):
        dest.mkdir(parents=True, exist_ok=True)
        tar.extractall(dest, members=_counted(keep, dest, budget), filter="data")
    return [m.name for m in keep if not m.isdir()]


def _counted(members: list[tarfile.TarInfo], dest: Path, budget: _Budget) -> Iterator[tarfile.TarInfo]:
    """`members`, each counted against `budget` by the size of the file it left on disk (extractall asks
    for the next member once it has written the previous one). Hard links count at their target's size:
    what they occupy where a copy is made, and what any later copy of the folder writes."""
    for member in members:
        yield member
        if member.isreg() or member.islnk():
            budget.wrote(os.lstat(os.path.join(dest, member.name)).st_size)


def _tar_problem(member: tarfile.TarInfo, parts: list[str], links: set[str], dest: Path,
                 strip: int) -> tuple[str | None, tarfile.TarInfo | None]:
    """Why `member` may not be unpacked (None if it may), and the member renamed as it will be written."""
    if member.name.startswith("/"):
        return "absolute path", None
    if ".." in parts:
        return "'..' in its path", None
    if (via := _through_link(parts, links)):
        return f"written through the link {via!r}", None
    if member.ischr() or member.isblk() or member.isfifo():
        return "device or fifo", None
    linkname = member.linkname
    if member.issym():
        if linkname.startswith("/"):
            return f"symlink to the absolute path {linkname!r}", None
        if _follow(parts[:-1], linkname, links) is None:
            return f"symlink to {linkname!r}, outside the target", None
    elif member.islnk():
        target = _stripped(linkname.split("/"), strip)   # hard link targets are member names: strip them too
        if linkname.startswith("/") or not target or ".." in target or _through_link(target, links):
            return f"hard link to {linkname!r}, outside the target", None
        linkname = "/".join(target)
    renamed = member.replace(name="/".join(parts), linkname=linkname, deep=False)
    try:
        tarfile.data_filter(renamed, str(dest))
    except tarfile.FilterError as err:
        return str(err), None
    return None, renamed


def _follow(folder: list[str], target: str, links: set[str]) -> str | None:
    """Where a symlink in `folder` pointing at the relative `target` leads, by name alone; None
    when it leaves the root or passes through a link of the archive (whose real target would
    make the name-only answer wrong)."""
    parts = list(folder)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if "/".join(parts) in links:
            return None
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


# --- zip ---------------------------------------------------------------------------------------

def _unpack_zip(zf: zipfile.ZipFile, archive: Path, dest: Path, strip: int, budget: _Budget) -> list[str]:
    plan, problems = [], []
    for info in zf.infolist():
        raw = info.filename
        # Zips written on Windows sometimes separate with backslashes: treat them as separators.
        parts = _stripped(re.split(r"[/\\]", raw), strip)
        if raw.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", raw):
            problems.append(f"{raw!r} (absolute path)")
        elif ".." in parts:
            problems.append(f"{raw!r} ('..' in its path)")
        elif stat.S_ISLNK(info.external_attr >> 16):
            problems.append(f"{raw!r} (symlink)")
        elif parts and _outside_on_disk(dest, "/".join(parts)):
            problems.append(f"{raw!r} (outside the target through a link already there)")
        elif parts:
            plan.append((info, "/".join(parts)))
    _refuse_if_any(problems, archive, dest)
    budget.declare(sum(info.file_size for info, _ in plan if not info.is_dir()))
    written = []
    with _undone_on_failure(dest, [name for _, name in plan]):
        dest.mkdir(parents=True, exist_ok=True)
        for info, name in plan:
            path = dest / name
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(path, "wb") as out:
                while chunk := src.read(_CHUNK):
                    budget.wrote(len(chunk))   # counted before it is written: a refused chunk never lands
                    out.write(chunk)
            written.append(name)
    return written
