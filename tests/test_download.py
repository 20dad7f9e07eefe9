"""Downloads (data/download.py) against a loopback HTTP server, and safe unpacking (data/extract.py).

Real requests, real files: only gdown is replaced (Google Drive cannot be reached from the tests).
"""
from __future__ import annotations

import hashlib
import os
import io
import json
import random
import socket
import tarfile
import zipfile
from pathlib import Path

import gdown
import gdown.exceptions
import pytest
from gdown.download import GoogleDriveFileToDownload
import requests

from loopback import Server, tar_bytes, zip_bytes

from clip4idc.data.download import ChecksumError, DownloadError, fetch_dataset, fetch_file, sha256_of
from clip4idc.data.extract import RATIO_PARAM, SIZE_PARAM, UnsafeArchiveError, unpack_archive
from clip4idc.errors import ArchiveLimitError, CorruptArchiveError
from clip4idc.params import DatasetParams, DownloadParams, SourceFile

PAYLOAD = bytes(range(256)) * 400          # 100 KiB, several chunks of a resumed transfer
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def dirs(tmp_path):
    downloads, out = tmp_path / "downloads", tmp_path / "out"
    out.mkdir()
    return downloads, out


def closed_port_url(path: str = "/file.bin") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def settings(base: str = "http://127.0.0.1:9", retries: int = 3) -> DownloadParams:
    return DownloadParams(retries=retries, backoff=0.01, timeout=5.0, archive_org_base=base,
                          max_unpacked_gb=100.0, max_unpack_ratio=100.0)


def dataset(*files: dict) -> DatasetParams:
    return DatasetParams.model_validate({"source": "download", "format": "ier", "label": "T", "files": list(files)})


def fetch(ds: DatasetParams, downloads: Path, out: Path, base: str = "http://127.0.0.1:9", retries: int = 3):
    return fetch_dataset("toy", ds, downloads, out, settings=settings(base, retries), progress=False)


# --- plain files -------------------------------------------------------------------------------

def test_download_with_pinned_sha256_then_reuse(server, dirs):
    downloads, out = dirs
    server.files["/a.bin"] = PAYLOAD
    ds = dataset({"name": "sub/a.bin", "url": server.url("/a.bin"), "sha256": PAYLOAD_SHA})
    [entry] = fetch(ds, downloads, out)
    assert entry == {"name": "sub/a.bin", "origin": server.url("/a.bin"), "sha256": PAYLOAD_SHA, "bytes": len(PAYLOAD)}
    assert (out / "sub/a.bin").read_bytes() == PAYLOAD
    assert (downloads / "sub/a.bin").read_bytes() == PAYLOAD
    assert not (downloads / "sub/a.bin.part").exists()
    # A second fetch uses the kept copy without asking the server.
    out2 = out.parent / "out2"
    out2.mkdir()
    [again] = fetch(ds, downloads, out2)
    assert again["origin"] == "earlier download" and (out2 / "sub/a.bin").read_bytes() == PAYLOAD
    assert server.paths() == ["/a.bin"]


def test_hand_placed_file_with_the_wrong_sha256_is_moved_aside_and_stops_the_run(server, dirs):
    """The user's copy is kept (renamed, never overwritten), the message says where it went and both hashes,
    and the run stops at once: no request, so no retries (offline, they would only wait). A rerun downloads."""
    downloads, out = dirs
    server.files["/a.bin"] = PAYLOAD
    ds = dataset({"name": "sub/a.bin", "url": server.url("/a.bin"), "sha256": PAYLOAD_SHA})
    (downloads / "sub").mkdir(parents=True)
    target, aside = downloads / "sub/a.bin", downloads / "sub/a.bin.sha256-mismatch"
    for attempt, content in enumerate([b"not the file", b"another wrong file"]):
        target.write_bytes(content)
        with pytest.raises(ChecksumError) as err:
            fetch(ds, downloads, out)
        moved = aside if attempt == 0 else aside.with_name("a.bin.sha256-mismatch-2")
        assert moved.read_bytes() == content and not target.exists()
        message = str(err.value)
        assert len(message.splitlines()) == 1 and str(moved.resolve()) in message
        assert PAYLOAD_SHA in message and hashlib.sha256(content).hexdigest() in message
        assert "data.toy.files" in message and str(target.resolve()) in message
    assert aside.read_bytes() == b"not the file"          # the first copy was not overwritten by the second
    assert server.paths() == [] and list(out.iterdir()) == []
    [entry] = fetch(ds, downloads, out)
    assert entry["origin"] == server.url("/a.bin") and (out / "sub/a.bin").read_bytes() == PAYLOAD


def test_earlier_download_failing_a_new_pin_is_moved_aside_and_downloaded_again(server, dirs, capsys):
    """A file this module downloaded (DOWNLOADED.json has its hash) whose pin changed since: kept beside the
    new download, which follows in the same run."""
    downloads, out = dirs
    old = b"the file before its authors replaced it"
    server.files["/a.bin"] = old
    fetch(dataset({"name": "a.bin", "url": server.url("/a.bin")}), downloads, out)   # unpinned
    server.files["/a.bin"] = PAYLOAD
    out2 = out.parent / "out2"
    out2.mkdir()
    [entry] = fetch(dataset({"name": "a.bin", "url": server.url("/a.bin"), "sha256": PAYLOAD_SHA}), downloads, out2)
    err = capsys.readouterr().err
    aside = (downloads / "a.bin.sha256-mismatch").resolve()
    assert f"moved it to {aside}" in err and hashlib.sha256(old).hexdigest() in err
    assert aside.read_bytes() == old
    assert entry["origin"] == server.url("/a.bin") and (out2 / "a.bin").read_bytes() == PAYLOAD
    assert server.paths() == ["/a.bin", "/a.bin"]


def test_corrupted_body_raises_checksum_error_and_keeps_nothing(server, dirs):
    downloads, out = dirs
    server.files["/a.bin"] = PAYLOAD
    server.corrupt.add("/a.bin")
    with pytest.raises(ChecksumError) as err:
        fetch(dataset({"name": "a.bin", "url": server.url("/a.bin"), "sha256": PAYLOAD_SHA}), downloads, out)
    bad = hashlib.sha256(bytes(b ^ 0xFF for b in PAYLOAD)).hexdigest()
    assert PAYLOAD_SHA in str(err.value) and bad in str(err.value)
    assert list(out.iterdir()) == []
    assert not (downloads / "a.bin").exists() and not (downloads / "a.bin.part").exists()


def test_retries_after_503_then_gives_up(server, dirs):
    downloads, out = dirs
    server.files["/a.bin"] = PAYLOAD
    server.fail["/a.bin"] = 2
    fetch(dataset({"name": "a.bin", "url": server.url("/a.bin")}), downloads, out, retries=3)
    assert server.paths() == ["/a.bin"] * 3 and (out / "a.bin").read_bytes() == PAYLOAD

    server.fail["/b.bin"] = 5
    server.files["/b.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match="503"):
        fetch(dataset({"name": "b.bin", "url": server.url("/b.bin")}), downloads, out, retries=2)
    assert server.paths().count("/b.bin") == 2


def test_resume_from_part_file(server, dirs):
    downloads, out = dirs
    server.files["/a.bin"] = PAYLOAD
    downloads.mkdir()
    half = len(PAYLOAD) // 2
    (downloads / "a.bin.part").write_bytes(PAYLOAD[:half])
    fetch(dataset({"name": "a.bin", "url": server.url("/a.bin"), "sha256": PAYLOAD_SHA}), downloads, out)
    assert server.seen == [("/a.bin", f"bytes={half}-")]
    assert (downloads / "a.bin").read_bytes() == PAYLOAD and (out / "a.bin").read_bytes() == PAYLOAD


def test_connection_dropped_midway_resumes_on_the_next_attempt(server, dirs):
    # Big enough that whole 1 MiB chunks reach the disk before the cut (the chunk in flight is lost).
    downloads, out = dirs
    big = PAYLOAD * 40
    server.files["/a.bin"] = big
    server.cut["/a.bin"] = 1
    fetch(dataset({"name": "a.bin", "url": server.url("/a.bin"), "sha256": hashlib.sha256(big).hexdigest()}),
          downloads, out)
    [(_, first), (_, second)] = server.seen
    assert first is None and 0 < int(second.removeprefix("bytes=").rstrip("-")) <= len(big) // 2
    assert (out / "a.bin").read_bytes() == big


def test_complete_part_file_the_server_cannot_continue(server, dirs):
    downloads, out = dirs
    server.files["/a.bin"] = PAYLOAD
    downloads.mkdir()
    (downloads / "a.bin.part").write_bytes(PAYLOAD)   # killed after the last byte, before the rename
    fetch(dataset({"name": "a.bin", "url": server.url("/a.bin"), "sha256": PAYLOAD_SHA}), downloads, out)
    assert server.seen == [("/a.bin", f"bytes={len(PAYLOAD)}-"), ("/a.bin", None)]   # 416, then afresh
    assert (out / "a.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_the_part_file(server, dirs):
    downloads, out = dirs
    server.files["/a.bin"] = PAYLOAD
    server.no_range = True
    downloads.mkdir()
    (downloads / "a.bin.part").write_bytes(b"x" * 1000)   # would corrupt the file if appended to
    fetch(dataset({"name": "a.bin", "url": server.url("/a.bin"), "sha256": PAYLOAD_SHA}), downloads, out)
    assert server.seen == [("/a.bin", "bytes=1000-")]
    assert (out / "a.bin").read_bytes() == PAYLOAD


def test_mirror_used_when_origin_is_missing(server, dirs):
    downloads, out = dirs
    server.files["/mirror/a.bin"] = PAYLOAD
    ds = dataset({"name": "a.bin", "url": server.url("/gone/a.bin"), "mirrors": [server.url("/mirror/a.bin")],
                  "sha256": PAYLOAD_SHA})
    [entry] = fetch(ds, downloads, out)
    assert entry["origin"] == server.url("/mirror/a.bin")
    assert server.paths() == ["/gone/a.bin", "/mirror/a.bin"]   # a 404 is not retried
    assert (out / "a.bin").read_bytes() == PAYLOAD


def test_offline_error_says_where_to_put_the_file(dirs):
    downloads, out = dirs
    url = closed_port_url()
    with pytest.raises(DownloadError) as err:
        fetch(dataset({"name": "data/a.bin", "url": url}), downloads, out, retries=2)
    message = str(err.value)
    assert url in message and str((downloads / "data/a.bin").resolve()) in message
    assert list(out.iterdir()) == []


def test_hand_placed_file_is_used_without_network(dirs, capsys):
    downloads, out = dirs
    (downloads / "data").mkdir(parents=True)
    (downloads / "data/a.bin").write_bytes(PAYLOAD)
    [entry] = fetch(dataset({"name": "data/a.bin", "url": closed_port_url()}), downloads, out)
    assert entry == {"name": "data/a.bin", "origin": "placed by hand", "sha256": PAYLOAD_SHA, "bytes": len(PAYLOAD)}
    assert (out / "data/a.bin").read_bytes() == PAYLOAD
    assert f'add "sha256: {PAYLOAD_SHA}" to data.toy.files' in capsys.readouterr().err


def test_archives_unpack_with_strip(server, dirs):
    downloads, out = dirs
    server.files["/a.tar.bz2"] = tar_bytes({"top/x/1.txt": b"one", "top/2.txt": b"two"}, "bz2")
    server.files["/b.zip"] = zip_bytes({"images/3.txt": b"three"})
    ds = dataset({"name": "a.tar.bz2", "url": server.url("/a.tar.bz2"), "unpack": "data", "strip": 1},
                 {"name": "b.zip", "url": server.url("/b.zip"), "unpack": "."})
    entries = fetch(ds, downloads, out)
    assert [e["sha256"] for e in entries] == [sha256_of(downloads / "a.tar.bz2"), sha256_of(downloads / "b.zip")]
    assert (out / "data/x/1.txt").read_bytes() == b"one" and (out / "data/2.txt").read_bytes() == b"two"
    assert (out / "images/3.txt").read_bytes() == b"three"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "data/2.txt", "data/x/1.txt", "images/3.txt"]


def test_unpack_of_a_non_archive_is_a_download_error(server, dirs):
    downloads, out = dirs
    server.files["/a.zip"] = b"<html>quota exceeded</html>"
    with pytest.raises(DownloadError, match="not a zip or tar archive"):
        fetch(dataset({"name": "a.zip", "url": server.url("/a.zip"), "unpack": "."}), downloads, out)


# --- Google Drive and its archive.org mirror -----------------------------------------------------

def archive_org_item(server: Server, files: dict[str, bytes], md5s: dict[str, str] | None = None) -> None:
    listing = [{"name": n, "md5": (md5s or {}).get(n, hashlib.md5(b).hexdigest()), "size": str(len(b)),
                "source": "original"} for n, b in files.items()]
    listing += [{"name": "item_meta.xml", "md5": "0", "source": "original"},
                {"name": "images.zip_thumb.jpg", "md5": "0", "source": "derivative"}]
    server.files["/metadata/item"] = json.dumps({"files": listing}).encode()
    for name, body in files.items():
        server.files[f"/download/item/{name}"] = body


def drive_folder_refuses(monkeypatch):
    # gdown's network (drive.google.com) cannot be reached from the tests: make Drive refuse.
    def refuse(**kwargs):
        raise gdown.exceptions.FileURLRetrievalError("simulated: Drive refused the folder")
    monkeypatch.setattr(gdown, "download_folder", refuse)


def test_archive_org_mirror_of_a_drive_folder(server, dirs, monkeypatch):
    downloads, out = dirs
    drive_folder_refuses(monkeypatch)
    archive_org_item(server, {"images.zip": zip_bytes({"p/1.png": b"png1"}), "notes.txt": b"hello"})
    ds = dataset({"name": "images", "gdrive_folder": "FOLDER", "archive_org": "item", "unpack": "imgs"})
    [entry] = fetch(ds, downloads, out, base=server.base)
    assert entry["origin"] == f"{server.base}/details/item" and entry["sha256"] is None
    assert (out / "imgs/p/1.png").read_bytes() == b"png1" and (out / "imgs/notes.txt").read_bytes() == b"hello"
    assert sorted(server.paths()) == ["/download/item/images.zip", "/download/item/notes.txt", "/metadata/item"]
    assert sorted(p.name for p in downloads.iterdir()) == ["DOWNLOADED.json", "images"]


def test_archive_org_md5_mismatch(server, dirs, monkeypatch):
    downloads, out = dirs
    drive_folder_refuses(monkeypatch)
    archive_org_item(server, {"notes.txt": b"hello"}, md5s={"notes.txt": "0" * 32})
    ds = dataset({"name": "images", "gdrive_folder": "FOLDER", "archive_org": "item", "unpack": "imgs"})
    with pytest.raises(DownloadError) as err:
        fetch(ds, downloads, out, base=server.base)
    message = str(err.value)
    assert "md5 mismatch" in message and f"{server.base}/details/item" in message
    assert "https://drive.google.com/drive/folders/FOLDER" in message
    assert str((downloads / "images").resolve()) in message
    assert not (downloads / "images").exists() and list(out.iterdir()) == []


def test_gdrive_file_and_folder(dirs, monkeypatch):
    # gdown's network (drive.google.com) cannot be reached from the tests: stand-ins write what
    # gdown would, with gdown's own signatures (keyword arguments only, as download.py calls them).
    downloads, out = dirs
    calls = []

    def download(*, id, output, quiet, resume, timeout):
        calls.append((id, resume))
        Path(output).write_bytes(PAYLOAD)
        return output

    def download_folder(*, id, output, quiet, resume, timeout):
        calls.append((id, resume))
        Path(output, "sub").mkdir(parents=True)
        Path(output, "sub/a.tar").write_bytes(tar_bytes({"1.txt": b"one"}, ""))
        Path(output, "b.txt").write_bytes(b"two")
        return [str(Path(output, "sub/a.tar")), str(Path(output, "b.txt"))]

    monkeypatch.setattr(gdown, "download", download)
    monkeypatch.setattr(gdown, "download_folder", download_folder)
    ds = dataset({"name": "f.bin", "gdrive": "FILE", "sha256": PAYLOAD_SHA},
                 {"name": "folder", "gdrive_folder": "FOLDER", "unpack": "."})
    file_entry, folder_entry = fetch(ds, downloads, out)
    assert calls == [("FILE", True), ("FOLDER", True)]
    assert file_entry["origin"] == "https://drive.google.com/uc?id=FILE"
    assert folder_entry == {"name": "folder", "origin": "https://drive.google.com/drive/folders/FOLDER",
                            "sha256": None, "bytes": (downloads / "folder/sub/a.tar").stat().st_size + 3}
    assert (out / "f.bin").read_bytes() == PAYLOAD
    assert (out / "sub/1.txt").read_bytes() == b"one" and (out / "b.txt").read_bytes() == b"two"
    assert not (downloads / "folder.part").exists()


def test_one_file_of_a_gdrive_folder(dirs, monkeypatch):
    """`folder_file`: the folder is listed without downloading it, then only that file is fetched by its id;
    it is a single file, hashed and recorded like any other, and reused without the network afterwards."""
    downloads, _ = dirs
    calls = []

    def download_folder(*, id, quiet, skip_download, timeout):
        calls.append(("list", id, skip_download))
        # what gdown's listing returns (skip_download=True): each file's id and path in the folder
        return [GoogleDriveFileToDownload(id=i, path=p, local_path=p)
                for i, p in (("ID-SPOT", "pytorch_model.bin.spot"), ("ID-CLEVR", "pytorch_model.bin.clevr"))]

    def download(*, id, output, quiet, resume, timeout):
        calls.append(("get", id, resume))
        Path(output).write_bytes(PAYLOAD)
        return output

    monkeypatch.setattr(gdown, "download_folder", download_folder)
    monkeypatch.setattr(gdown, "download", download)
    file = SourceFile(name="trained/pytorch_model.bin.clevr", gdrive_folder="FOLDER",
                      folder_file="pytorch_model.bin.clevr")
    entry = fetch_file("toy", file, downloads, settings=settings(), progress=False, pin_at="x")
    assert calls == [("list", "FOLDER", True), ("get", "ID-CLEVR", True)]
    assert entry == {"name": "trained/pytorch_model.bin.clevr", "sha256": PAYLOAD_SHA, "bytes": len(PAYLOAD),
                     "origin": "https://drive.google.com/drive/folders/FOLDER (its file pytorch_model.bin.clevr)"}
    assert json.loads((downloads / "DOWNLOADED.json").read_text())["trained/pytorch_model.bin.clevr"]["sha256"] \
        == PAYLOAD_SHA
    assert fetch_file("toy", file, downloads, settings=settings(), progress=False, pin_at="x")["origin"] == \
        "earlier download" and len(calls) == 2
    missing = SourceFile(name="f.bin", gdrive_folder="FOLDER", folder_file="pytorch_model.bin.ier")
    with pytest.raises(DownloadError, match=r"lists 0 files named 'pytorch_model.bin.ier'.*pytorch_model.bin.spot"):
        fetch_file("toy", missing, downloads, settings=settings(), progress=False, pin_at="x")


def test_brief_failure_message_is_two_lines_naming_the_file_and_where_to_put_it(dirs, monkeypatch):
    downloads, _ = dirs

    def unreachable(**kwargs):
        raise requests.ConnectionError("drive.google.com unreachable (test)")

    monkeypatch.setattr(gdown, "download_folder", unreachable)
    file = SourceFile(name="pretrained/pytorch_model.bin.spot", gdrive_folder="FOLDER",
                      folder_file="pytorch_model.bin.spot")
    with pytest.raises(DownloadError) as err:
        fetch_file("spot_the_diff", file, downloads, settings=settings(retries=1), progress=False, pin_at="x",
                   brief=True)
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and "unreachable" not in str(err.value)
    assert "could not download pretrained/pytorch_model.bin.spot" in lines[0]
    assert "https://drive.google.com/drive/folders/FOLDER" in lines[0]
    assert f"put it at {(downloads / 'pretrained/pytorch_model.bin.spot').resolve()}, then run again" in lines[1]


def test_folder_file_needs_its_folder_and_may_be_pinned():
    with pytest.raises(ValueError, match="folder_file names a file of a gdrive_folder"):
        SourceFile(name="a", gdrive="X", folder_file="a")
    pinned = SourceFile(name="a", gdrive_folder="X", folder_file="a", sha256=PAYLOAD_SHA)
    assert not pinned.is_folder and SourceFile(name="a", gdrive_folder="X").is_folder


# --- unsafe archives ---------------------------------------------------------------------------

@pytest.fixture
def sandbox(tmp_path):
    """(dest, everything-outside check): dest's parent holds the archive and an empty sibling folder."""
    root = tmp_path / "root"
    (root / "sibling").mkdir(parents=True)
    dest = root / "dest"

    def nothing_outside(archive: Path):
        assert sorted(p.name for p in root.iterdir()) == sorted(["sibling", archive.name])
        assert list((root / "sibling").iterdir()) == []
        assert not (tmp_path / "evil").exists()
    return root, dest, nothing_outside


def evil_tar(root: Path, members: list[tarfile.TarInfo]) -> Path:
    path = root / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for info in members:
            data = b"pwned" if info.isreg() else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tarinfo(name: str, *, symlink_to: str | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if symlink_to is not None:
        info.type, info.linkname = tarfile.SYMTYPE, symlink_to
    return info


def test_tar_with_dotdot_is_refused(sandbox):
    root, dest, nothing_outside = sandbox
    archive = evil_tar(root, [tarinfo("ok.txt"), tarinfo("../evil"), tarinfo("a/../../sibling/evil")])
    with pytest.raises(UnsafeArchiveError, match=r"2 unsafe member\(s\).*'\.\./evil'"):
        unpack_archive(archive, dest)
    nothing_outside(archive)


def test_tar_with_absolute_path_is_refused(sandbox):
    root, dest, nothing_outside = sandbox
    target = str(root / "sibling" / "evil")
    archive = evil_tar(root, [tarinfo(target)])
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        unpack_archive(archive, dest)
    nothing_outside(archive)


def test_tar_writing_through_an_outside_symlink_is_refused(sandbox):
    root, dest, nothing_outside = sandbox
    archive = evil_tar(root, [tarinfo("link", symlink_to="../sibling"), tarinfo("link/evil"),
                              tarinfo("abs", symlink_to=str(root / "sibling")), tarinfo("abs/evil")])
    with pytest.raises(UnsafeArchiveError) as err:
        unpack_archive(archive, dest)
    assert "4 unsafe" in str(err.value) and "written through the link 'link'" in str(err.value)
    nothing_outside(archive)


def test_tar_symlink_that_only_looks_inside_is_refused(sandbox):
    # `d/up` points at the root, so `d/up/..` is outside although the name `d/up/..` is not.
    root, dest, nothing_outside = sandbox
    archive = evil_tar(root, [tarinfo("d/up", symlink_to=".."), tarinfo("esc", symlink_to="d/up/../sibling")])
    with pytest.raises(UnsafeArchiveError, match="'esc'"):
        unpack_archive(archive, dest)
    nothing_outside(archive)


def test_zip_with_dotdot_or_symlink_is_refused(sandbox):
    root, dest, nothing_outside = sandbox
    archive = root / "evil.zip"
    link = zipfile.ZipInfo("link")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr("../evil", b"pwned")
        zf.writestr("..\\sibling\\evil", b"pwned")
        zf.writestr(link, "../sibling")
    with pytest.raises(UnsafeArchiveError, match=r"3 unsafe member\(s\)"):
        unpack_archive(archive, dest)
    nothing_outside(archive)


def test_safe_archives_unpack_with_strip_and_links_inside(tmp_path):
    archive = evil_tar(tmp_path, [tarinfo("top/a/1.txt"), tarinfo("top/link", symlink_to="a/1.txt"),
                                  tarinfo("top/b/up", symlink_to="../a")])
    written = unpack_archive(archive, tmp_path / "dest", strip=1)
    assert sorted(written) == ["a/1.txt", "b/up", "link"]
    assert (tmp_path / "dest/link").read_bytes() == b"pwned" and (tmp_path / "dest/b/up/1.txt").exists()


# --- unpacking limits (params download.max_unpacked_gb, download.max_unpack_ratio) ------------------

def archive_file(path: Path, kind: str, members: dict[str, bytes]) -> Path:
    path.write_bytes(zip_bytes(members, zipfile.ZIP_DEFLATED) if kind == "zip" else tar_bytes(members))
    return path


NOISE = random.Random(0).randbytes(3000)    # incompressible


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_an_archive_declaring_more_than_max_unpacked_gb_is_refused_before_writing(tmp_path, kind):
    archive = archive_file(tmp_path / f"a.{kind}", kind, {"x/1.bin": NOISE, "x/2.bin": NOISE})
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveLimitError) as err:
        unpack_archive(archive, dest, max_gb=5e-6, max_ratio=100.0)     # 5,000 bytes; it holds 6,000
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(archive) in message
    assert f"{SIZE_PARAM}: 5e-06" in message and "6 kB" in message and "nothing was unpacked" in message
    assert isinstance(err.value, UnsafeArchiveError)       # an input error: the CLI prints it in one line
    assert not dest.exists()
    assert sorted(unpack_archive(archive, dest, max_gb=7e-6, max_ratio=100.0)) == ["x/1.bin", "x/2.bin"]


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_highly_compressible_member_over_max_unpack_ratio_is_refused_before_writing(tmp_path, kind):
    # 1 MB of zeros compresses to about 1 kB: a zip bomb in miniature, well under any size limit.
    archive = archive_file(tmp_path / f"a.{kind}", kind, {"ok.bin": NOISE, "zeros.bin": bytes(10**6)})
    ratio = (10**6 + len(NOISE)) / archive.stat().st_size
    assert 20 < ratio < 1000
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveLimitError) as err:
        unpack_archive(archive, dest, max_gb=100.0, max_ratio=20.0)
    message = str(err.value)
    assert str(archive) in message and f"{RATIO_PARAM}: 20" in message and f"{ratio:.0f} times" in message
    assert not dest.exists()
    unpack_archive(archive, dest, max_gb=100.0, max_ratio=1000.0)
    assert (dest / "zeros.bin").stat().st_size == 10**6


def test_bytes_written_beyond_what_headers_declare_are_counted_and_undone(tmp_path):
    """Hard links declare no size, yet each unpacks to its target's (a copy where the filesystem cannot link,
    and in any later copy of the folder): the count of what is written stops the archive, and removes what
    it wrote, while what was in the folder before stays."""
    members = [tarinfo("data/big.bin")] + [tarinfo(f"data/link{i}") for i in range(5)]
    for info in members[1:]:
        info.type, info.linkname = tarfile.LNKTYPE, "data/big.bin"
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        members[0].size = len(NOISE)
        tar.addfile(members[0], io.BytesIO(NOISE))
        for info in members[1:]:
            tar.addfile(info)
    dest = tmp_path / "dest"
    (dest / "data").mkdir(parents=True)
    (dest / "data/before.txt").write_text("an earlier archive's file")
    (dest / "before").mkdir()
    with pytest.raises(ArchiveLimitError) as err:
        unpack_archive(archive, dest, max_gb=1e-5, max_ratio=100.0)    # 10,000 bytes: 3,000 declared, 18,000 in all
    message = str(err.value)
    assert "stopped unpacking" in message and "its members declare 3 kB" in message and SIZE_PARAM in message
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["before", "data", "data/before.txt"]
    assert len(unpack_archive(archive, dest, max_gb=2e-5, max_ratio=100.0)) == 6


def test_an_archive_failing_midway_leaves_nothing_half_unpacked(tmp_path):
    """Any error while writing (here a member failing its CRC), not only a limit, removes what was written:
    the folder is as it was, not a partial dataset that reads as complete."""
    body = zip_bytes({"a/first.txt": b"fine", "a/second.txt": b"twotwotwo" * 100})
    at = body.index(b"twotwotwo") + 5
    archive = tmp_path / "broken.zip"
    archive.write_bytes(body[:at] + b"X" + body[at + 1:])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CorruptArchiveError, match=rf"{archive} is damaged or truncated \(BadZipFile: Bad CRC"):
        unpack_archive(archive, dest)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_truncated_archive_is_one_error_naming_it_and_unpacks_nothing(tmp_path, kind):
    """A download cut short (or a half copy placed by hand, with no sha256 pinned to catch it) is an expected
    fault: one line naming the archive and what to do (CorruptArchiveError is a DownloadError), not a traceback."""
    files = {f"d/{i}.txt": os.urandom(3000) for i in range(4)}
    body = zip_bytes(files) if kind == "zip" else tar_bytes(files, "gz")
    archive = tmp_path / f"cut.{kind}"
    archive.write_bytes(body[:len(body) * 2 // 3])
    with pytest.raises(CorruptArchiveError, match=rf"^{archive} is damaged or truncated \(.*\); nothing of it was "
                                                  rf"unpacked into {tmp_path / 'dest'}: delete it and run again"):
        unpack_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert issubclass(CorruptArchiveError, DownloadError)


def test_not_an_archive(tmp_path):
    path = tmp_path / "data.tar.gz"    # the name says tar.gz; the content decides
    path.write_text("just text")
    with pytest.raises(ValueError, match="not a recognised archive"):
        unpack_archive(path, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
