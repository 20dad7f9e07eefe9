"""download → prepare for each real dataset, through the CLI, from a loopback server.

Each test builds a miniature of the dataset exactly as its authors distribute it (archive layout,
annotation files, file names), serves it over HTTP, points a copy of params.yaml's paper-profile
`data.<dataset>.files` at the server, and runs `clip4idc fetch` then `clip4idc prepare`. Counts are
worked out by hand from the miniature. Google Drive cannot be reached here, so each Drive file is
served as a plain URL with the same name, archive and layout.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import yaml
from loopback import Server, tar_bytes, zip_bytes
from PIL import Image

from clip4idc import cli

REPO = Path(__file__).resolve().parents[1]
RAW_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _png(seed: int, size=(48, 32), fmt="PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(pixels)
    buf = io.BytesIO()
    (im.convert("P") if fmt == "GIF" else im).save(buf, format=fmt)
    return buf.getvalue()


def _params(tmp_path: Path, dataset: str, files: list[dict], server: Server) -> Path:
    """params.yaml with the paper profile's data settings and its model (whose input size the prepared images
    must have), `dataset`'s files on the server."""
    raw = copy.deepcopy(RAW_PARAMS)
    paper = raw["profiles"]["paper"]
    raw["profiles"]["paper"] = {"datasets": [dataset], "data": paper["data"], "prepare": paper["prepare"],
                                "model": paper["model"]}
    raw["data"][dataset]["files"] = files
    raw["download"].update({"retries": 2, "backoff": 0.01, "timeout": 5.0, "archive_org_base": server.base})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _cli(stage: str, params: Path, *args: str) -> int:
    return cli.main([stage, "--params", str(params), "--profile", "paper", "--no-progress", *args])


def _fetch_and_prepare(tmp_path: Path, params: Path, dataset: str) -> dict:
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    assert _cli("fetch", params, "--dataset", dataset, "--out", str(raw),
                "--downloads", str(tmp_path / "downloads")) == 0
    assert _cli("prepare", params, "--dataset", dataset, "--raw", str(raw), "--out", str(prepared)) == 0
    return json.loads((prepared / "summary.json").read_text())


# --- CLEVR-Change: clevr_change.tar.gz unpacks to data/ ----------------------------------------------
CLEVR_SPLITS = {"train": [0, 1, 2], "val": [3], "test": [4, 5]}
CLEVR_TYPES = {"color": ["000000.png", "000004.png"], "add": ["000001.png"], "drop": ["000002.png", "000005.png"],
               "move": ["000003.png"], "material": []}


def _clevr_archive(extra: dict[str, bytes] | None = None) -> bytes:
    scenes = [n for split in CLEVR_SPLITS.values() for n in split]
    members = {"data/splits.json": json.dumps(CLEVR_SPLITS).encode(),
               "data/type_mapping.json": json.dumps(CLEVR_TYPES).encode(),
               "data/change_captions.json": json.dumps(
                   {f"CLEVR_default_{n:06d}.png": [f"the object {n} changed", f"something {n} changed"]
                    for n in scenes}).encode(),
               "data/no_change_captions.json": json.dumps(
                   {f"CLEVR_default_{n:06d}.png": ["no change was made"] for n in scenes}).encode()}
    for n in scenes:
        members[f"data/images/CLEVR_default_{n:06d}.png"] = _png(3 * n)
        members[f"data/sc_images/CLEVR_semantic_{n:06d}.png"] = _png(3 * n + 1)
        members[f"data/nsc_images/CLEVR_nonsemantic_{n:06d}.png"] = _png(3 * n + 2)
    return tar_bytes(members | (extra or {}))


def test_clevr_change_download_prepare(tmp_path, server):
    archive = _clevr_archive()
    server.files["/clevr_change.tar.gz"] = archive
    params = _params(tmp_path, "clevr_change", [{
        "name": "clevr_change.tar.gz", "url": server.url("/clevr_change.tar.gz"),
        "sha256": hashlib.sha256(archive).hexdigest(), "unpack": "."}], server)
    summary = _fetch_and_prepare(tmp_path, params, "clevr_change")
    # each scene: a change pair and a distractor pair; 2 change + 1 no-change captions per scene
    assert summary["splits"]["train"] == {"pairs": 6, "change_pairs": 3, "no_change_pairs": 3, "references": 9}
    assert summary["splits"]["val"]["pairs"] == 2 and summary["splits"]["test"]["pairs"] == 4
    assert summary["n_images"] == 6 * 3          # before, semantic-change and distractor image per scene
    assert summary["image_size"] == 224          # the paper profile's size
    manifest = [json.loads(line) for line in (tmp_path / "prepared/manifest/test.jsonl").read_text().splitlines()]
    assert [(m["pair_id"], m["change_type"]) for m in manifest] == [
        ("000004.png", "color"), ("000004.png_n", None), ("000005.png", "drop"), ("000005.png_n", None)]
    sources = json.loads((tmp_path / "raw" / "SOURCES.json").read_text())
    assert sources["files"][0]["sha256"] == hashlib.sha256(archive).hexdigest()
    assert sources["pairs"] == {"train": 6, "val": 2, "test": 4}


def test_a_corrupted_archive_fails_its_checksum_then_is_fetched_again(tmp_path, server, capsys):
    archive = _clevr_archive()
    server.files["/clevr_change.tar.gz"] = archive
    params = _params(tmp_path, "clevr_change", [{
        "name": "clevr_change.tar.gz", "url": server.url("/clevr_change.tar.gz"),
        "sha256": hashlib.sha256(archive).hexdigest(), "unpack": "."}], server)
    # The server first hands out a corrupted copy: the stage fails, names the file, writes nothing.
    server.corrupt.add("/clevr_change.tar.gz")
    assert _cli("fetch", params, "--dataset", "clevr_change", "--out", str(tmp_path / "raw"),
                "--downloads", str(tmp_path / "downloads")) == 1
    err = capsys.readouterr().err
    assert "clevr_change.tar.gz" in err and "sha256" in err and str((tmp_path / "downloads").resolve()) in err
    assert not (tmp_path / "raw").exists()
    # A corrupted copy placed by hand (an interrupted hand copy) is moved aside, not deleted, and the run
    # stops at once, in one line saying where it went: no download, so no retries. The next run downloads.
    server.corrupt.clear()
    half = archive[: len(archive) // 2]
    (tmp_path / "downloads" / "clevr_change.tar.gz").write_bytes(half)
    asked = len(server.seen)
    assert _cli("fetch", params, "--dataset", "clevr_change", "--out", str(tmp_path / "raw"),
                "--downloads", str(tmp_path / "downloads")) == 1
    err = capsys.readouterr().err
    line = err[err.index("error: "):]
    aside = (tmp_path / "downloads" / "clevr_change.tar.gz.sha256-mismatch").resolve()
    assert line.count("\n") == 1 and f"moved it to {aside}" in line
    assert hashlib.sha256(archive).hexdigest() in line and hashlib.sha256(half).hexdigest() in line
    assert aside.read_bytes() == half and len(server.seen) == asked and not (tmp_path / "raw").exists()
    summary = _fetch_and_prepare(tmp_path, params, "clevr_change")
    assert summary["splits"]["train"]["pairs"] == 6


def test_a_zip_bomb_is_refused_in_one_line_and_kept_for_a_rerun_with_a_higher_limit(tmp_path, server, capsys):
    """The CLEVR-Change miniature plus 30 MB of zeros (which compress about 1000:1): params.yaml's
    download.max_unpack_ratio refuses it before anything is unpacked; the archive stays in the downloads
    folder, so a rerun with the limit raised unpacks it without downloading it again."""
    archive = _clevr_archive({"data/padding.bin": bytes(30 * 10**6)})
    assert 100 < 30e6 / len(archive) < 1000
    server.files["/clevr_change.tar.gz"] = archive
    params = _params(tmp_path, "clevr_change", [{
        "name": "clevr_change.tar.gz", "url": server.url("/clevr_change.tar.gz"),
        "sha256": hashlib.sha256(archive).hexdigest(), "unpack": "."}], server)
    assert RAW_PARAMS["download"]["max_unpack_ratio"] == 100    # the default is what refuses it
    assert _cli("fetch", params, "--dataset", "clevr_change", "--out", str(tmp_path / "raw"),
                "--downloads", str(tmp_path / "downloads")) == 1
    err = capsys.readouterr().err
    line = err[err.index("error: "):]
    assert line.count("\n") == 1 and str(tmp_path / "downloads" / "clevr_change.tar.gz") in line
    assert "download.max_unpack_ratio: 100" in line and "nothing was unpacked" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads", "params.yaml"]   # no raw/, no temporary
    assert (tmp_path / "downloads" / "clevr_change.tar.gz").read_bytes() == archive
    raw = yaml.safe_load(params.read_text())
    raw["download"]["max_unpack_ratio"] = 1000
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    summary = _fetch_and_prepare(tmp_path, params, "clevr_change")
    assert summary["splits"]["train"]["pairs"] == 6 and server.paths() == ["/clevr_change.tar.gz"]
    assert (tmp_path / "raw" / "data" / "padding.bin").stat().st_size == 30 * 10**6


def test_a_dataset_placed_by_hand_is_verified_and_used_offline(tmp_path, server, capsys):
    archive = _clevr_archive()
    params = _params(tmp_path, "clevr_change", [{
        "name": "clevr_change.tar.gz", "url": server.url("/gone.tar.gz"),
        "sha256": hashlib.sha256(archive).hexdigest(), "unpack": "."}], server)
    # Offline (the server has no such file): the message says what to fetch and where to put it.
    assert _cli("fetch", params, "--dataset", "clevr_change", "--out", str(tmp_path / "raw"),
                "--downloads", str(tmp_path / "downloads")) == 1
    err = capsys.readouterr().err
    assert server.url("/gone.tar.gz") in err
    assert str((tmp_path / "downloads" / "clevr_change.tar.gz").resolve()) in err
    (tmp_path / "downloads" / "clevr_change.tar.gz").write_bytes(archive)
    summary = _fetch_and_prepare(tmp_path, params, "clevr_change")
    assert summary["splits"]["test"]["pairs"] == 4
    assert json.loads((tmp_path / "raw" / "SOURCES.json").read_text())["files"][0]["origin"] == "placed by hand"


# --- Spot-the-Diff: resized_images archive + annotations from the authors' repository -------------------
SPOT = {"train": [{"img_id": "10", "sentences": ["a car is gone"]},
                  {"img_id": "11", "sentences": ["the man moved", "a bag appears"]},
                  {"img_id": "10", "sentences": ["there is a new bike"]}],      # same img_id: merged
        "val": [{"img_id": "20", "sentences": ["no difference"]}],
        "test": [{"img_id": "30", "sentences": ["two people left", "a cart arrived"]},
                 {"img_id": "31", "sentences": ["the bus is gone"]}]}


def test_spot_the_diff_download_prepare(tmp_path, server):
    ids = ["10", "11", "20", "30", "31"]
    images = {}
    for n, img_id in enumerate(ids):
        images[f"resized_images/{img_id}.png"] = _png(2 * n, (32, 32))
        images[f"resized_images/{img_id}_2.png"] = _png(2 * n + 1, (32, 32))
        images[f"resized_images/{img_id}_diff.jpg"] = _png(99, (32, 32), "JPEG")
    server.files["/resized_images.zip"] = zip_bytes(images)
    files = [{"name": "resized_images.zip", "url": server.url("/resized_images.zip"), "unpack": "."}]
    for split, entries in SPOT.items():
        server.files[f"/spot/{split}.json"] = json.dumps(entries).encode()
        files.append({"name": f"annotations/{split}.json", "url": server.url(f"/spot/{split}.json")})
    summary = _fetch_and_prepare(tmp_path, _params(tmp_path, "spot_the_diff", files, server), "spot_the_diff")
    assert {s: v["pairs"] for s, v in summary["splits"].items()} == {"train": 2, "val": 1, "test": 2}
    assert summary["splits"]["train"]["references"] == 4        # 10: 1 + 1 merged, 11: 2
    assert summary["splits"]["test"]["references"] == 3
    assert all(v["no_change_pairs"] == 0 for v in summary["splits"].values())
    assert summary["n_images"] == 2 * 5                          # before and after; _diff.jpg unused
    refs = json.loads((tmp_path / "prepared/references/train.json").read_text())
    assert refs["10"] == ["a car is gone", "there is a new bike"]


# --- Image-Editing-Request: a Drive folder of images (archive.org mirror) + annotations ---------------
IER = {"train.json": [{"img0": "Reddit.com_a1_a1.jpg", "img1": "Reddit.com_a1_x.jpg", "sents": ["remove the man"],
                       "uid": "u1"},
                      {"img0": "Reddit.com_a1_a1.jpg", "img1": "Reddit.com_a1_x.jpg", "sents": ["delete him"],
                       "uid": "u2"}],                               # two uids on one image pair: two pairs
       "valid.json": [{"img0": "Reddit.com_b2_b2.png", "img1": "Reddit.com_b2_y.gif",
                       "sents": ["brighten it", "make it brighter", "more light"], "uid": "u3"}],
       "test.json": [{"img0": "Reddit.com_c3_c3.jpeg", "img1": "Reddit.com_c3_z.jpg",
                      "sents": ["crop it", "crop the photo", "cut the edges"], "uid": "u4"}]}


def test_ier_download_prepare_through_the_archive_org_mirror(tmp_path, server, monkeypatch):
    import gdown

    def drive_unreachable(*args, **kwargs):       # what gdown raises without network
        import requests
        raise requests.ConnectionError("drive.google.com unreachable (test)")

    monkeypatch.setattr(gdown, "download_folder", drive_unreachable)
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF"}
    names = sorted({e[k] for entries in IER.values() for e in entries for k in ("img0", "img1")})
    images = {name: _png(n, (40, 30), formats[name[name.rindex("."):]]) for n, name in enumerate(names)}
    # The mirror item: one zip of most images, one image file on its own, plus archive.org's own files.
    loose = names[0]
    packed = zip_bytes({name: data for name, data in images.items() if name != loose})
    item = {"packed.zip": packed, loose: images[loose]}
    meta = {"files": [{"name": n, "source": "original", "md5": hashlib.md5(d).hexdigest(), "size": str(len(d))}
                      for n, d in item.items()]
            + [{"name": "image-editing-dataset_meta.xml", "source": "original"}]}
    server.files["/metadata/image-editing-dataset"] = json.dumps(meta).encode()
    for n, d in item.items():
        server.files[f"/download/image-editing-dataset/{n}"] = d
    files = [{"name": "images", "gdrive_folder": "1p_hkPwRUiLl1RHV3DkzQk3ti-GzHzT7O",
              "archive_org": "image-editing-dataset", "unpack": "images"}]
    for name, entries in IER.items():
        server.files[f"/ier/{name}"] = json.dumps(entries).encode()
        files.append({"name": name, "url": server.url(f"/ier/{name}")})
    summary = _fetch_and_prepare(tmp_path, _params(tmp_path, "ier", files, server), "ier")
    assert {s: v["pairs"] for s, v in summary["splits"].items()} == {"train": 2, "val": 1, "test": 1}
    assert {s: v["references"] for s, v in summary["splits"].items()} == {"train": 2, "val": 3, "test": 3}
    assert summary["n_images"] == len(names) == 6                # u1 and u2 share their two images
    assert "/download/image-editing-dataset/image-editing-dataset_meta.xml" not in server.paths()
