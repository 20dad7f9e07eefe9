"""Unpack a downloaded zip or tar archive without letting any member land outside its target folder.

Every member is checked before the first byte is written, so a refused archive leaves nothing
behind. Refused: absolute names, `..` components, devices and fifos, links whose target lies
outside the folder, and members written through a link of the same archive (the classic
"symlink to /etc, then etc/passwd" trick). Tar members also pass `tarfile.data_filter`, which
resolves names against what is already on disk (an earlier archive unpacked into the same folder).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from ..errors import UnsafeArchiveError

_SHOWN = 5          # offending members named in an UnsafeArchiveError
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")   # a zip's first local header, or an empty zip


def archive_format(path: Path) -> str | None:
    """"zip" or "tar" (plain, gz, bz2 or xz) by the file's content, whatever its name; None otherwise."""
    # The zip magic is checked at the start of the file: zipfile.is_zipfile looks for a trailer
    # near the end, which a tar whose last member is a zip can also have.
    with open(path, "rb") as f:
        if f.read(4) in _ZIP_MAGIC:
            return "zip"
    return "tar" if tarfile.is_tarfile(path) else None


def unpack_archive(archive: Path, dest: Path, *, strip: int = 0) -> list[str]:
    """Unpack `archive` into `dest` (created if missing), dropping `strip` leading components of
    each member name, like `tar --strip-components`. Returns the relative paths written (files
    and links; folders are implied by them)."""
    archive, dest = Path(archive), Path(dest)
    kind = archive_format(archive)
    if kind is None:
        raise ValueError(f"{archive} is not a recognised archive: expected a zip or a tar "
                         f"(plain, .gz, .bz2 or .xz) file")
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            return _unpack_zip(zf, archive, dest, strip)
    with tarfile.open(archive, mode="r:*") as tar:
        return _unpack_tar(tar, archive, dest, strip)


def _refuse_if_any(problems: list[str], archive: Path, dest: Path) -> None:
    if problems:
        shown = "; ".join(problems[:_SHOWN]) + ("; ..." if len(problems) > _SHOWN else "")
        raise UnsafeArchiveError(f"{archive}: refusing to unpack into {dest}: {len(problems)} unsafe "
                                 f"member(s): {shown}")


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

def _unpack_tar(tar: tarfile.TarFile, archive: Path, dest: Path, strip: int) -> list[str]:
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
    dest.mkdir(parents=True, exist_ok=True)
    tar.extractall(dest, members=keep, filter="data")
    return [m.name for m in keep if not m.isdir()]


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

def _unpack_zip(zf: zipfile.ZipFile, archive: Path, dest: Path, strip: int) -> list[str]:
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
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for info, name in plan:
        path = dest / name
        if info.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(path, "wb") as out:
            shutil.copyfileobj(src, out)
        written.append(name)
    return written
