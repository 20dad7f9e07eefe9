"""Atomic file output: every file a stage writes appears whole or not at all.

A stage writes into a temporary sibling and renames it into place, so an interrupted
job never leaves a file that looks finished (ARCHITECTURE.md, property 5). A job killed outright
(SIGKILL, a cluster's time limit) cannot remove its temporary sibling, which may hold gigabytes (a
checkpoint, the image cache): its name carries the writer's process id and host, and the next write
of the same path removes those whose writer is gone.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import OutputError


# What follows `.<name>.` in the name of a temporary sibling: `<pid>@<host>.<mkstemp's random letters>.tmp`.
# Digits first, then `@`: never the rest of another target's name that begins with this one's (`model.pt.resume`
# beside `model.pt`).
_TEMP_REST = re.compile(r"(\d+)@([^/]+)\.[a-z0-9_]+\.tmp")
_noted: set[Path] = set()


def process_running(pid: int) -> bool:
    """Whether a process `pid` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # Linux: one that has exited but is not yet reaped (a zombie) answers too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove what interrupted writes of `path` left beside it (temporary files or folders of `atomic_path`) whose
    writer is no longer running; → those removed. Only this host's can be checked: one written on another host
    (a shared file system) may belong to a write under way there, so it is left, and said once."""
    path = Path(path)
    prefix, host = f".{path.name}.", socket.gethostname()
    try:
        entries = [e for e in path.parent.iterdir() if e.name.startswith(prefix)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        if (m := _TEMP_REST.fullmatch(entry.name[len(prefix):])) is None:
            continue
        pid, writer_host = int(m[1]), m[2]
        if writer_host != host:
            if entry not in _noted:
                _noted.add(entry)
                print(f"note: {entry} was left by process {pid} on host {writer_host} writing {path}; delete it "
                      f"once no job there writes it", file=sys.stderr, flush=True)
            continue
        # Our own pid: a write of this process under way (another thread), never stale. A pid reused since the
        # writer died keeps its temp one more time: left, not lost.
        if pid == os.getpid() or process_running(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
        print(f"removed {entry}, left by an interrupted write of {path} (process {pid}, no longer running)",
              file=sys.stderr, flush=True)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only on success.

    Works for files and directories alike: whatever the caller creates at the yielded
    path replaces `path` (an existing directory at `path` is removed first). What killed writes of
    `path` left is removed first (`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp_path = _reserve(path, ".tmp")
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise RuntimeError(f"nothing was written to the temporary path for {path}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        _remove(tmp_path)


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """`atomic_path` for outputs that belong together (a report's tables, figures and summary): yield a
    temporary path for each; on success all replace their targets, or, if any cannot, none does.

    Each old output is first renamed aside, then the new one renamed in; a rename that fails (an
    immutable file, a full or read-only disk) puts every old output back, removes the new ones and
    raises OutputError naming the path. Renames within a folder are cheap and rarely fail once the
    temporary files were written, so the window where some are new is short; an interrupted process
    can leave a `.<name>.*.old` sibling, never a mix that looks finished.
    """
    targets = [Path(p) for p in paths]
    temps = []
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(path)
            temps.append(_reserve(path, ".tmp"))
        yield temps
        for path, tmp in zip(targets, temps):
            if not tmp.exists():
                raise RuntimeError(f"nothing was written to the temporary path for {path}")
        aside: list[tuple[Path, Path]] = []
        placed: list[Path] = []
        try:
            for path, tmp in zip(targets, temps):
                current = path
                if path.exists() or path.is_symlink():
                    old = _reserve(path, ".old")
                    os.replace(path, old)
                    aside.append((path, old))
                os.replace(tmp, path)
                placed.append(path)
        except OSError as err:
            for path in placed:
                _remove(path)
            for path, old in aside:
                os.replace(old, path)
            raise OutputError(f"cannot write {current} ({err.strerror or err}); "
                              f"nothing of {', '.join(str(t) for t in targets)} was replaced") from err
        for _, old in aside:
            _remove(old)
    finally:
        for tmp in temps:
            _remove(tmp)


def _reserve(path: Path, suffix: str) -> Path:
    """A fresh name beside `path` (mkstemp's, then freed: the caller creates a file or a folder there). The
    writer's pid and host are in the name: how a later write tells a killed write's leftover `.tmp` from a
    live one (`remove_stale_temps`; a `.old` is the previous output, never removed by it)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{socket.gethostname()}.", suffix=suffix,
                                dir=path.parent)
    os.close(fd)
    os.unlink(name)
    return Path(name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_text(obj: Any, indent: int | None = 2) -> str:
    """The project's JSON files' text: keys in the object's order, a final newline."""
    return json.dumps(obj, indent=indent, sort_keys=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json_text(obj, indent))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a JSON file at {path}, found nothing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
