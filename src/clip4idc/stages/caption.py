"""`clip4idc caption`: caption any image pair with any fine-tuned checkpoint. A tool, not a stage.

    clip4idc caption --checkpoint CKPT BEFORE AFTER               prints the pair's caption
    clip4idc caption --checkpoint CKPT --pairs LIST --out OUT.json   writes {id: caption}

The checkpoint is the finetune stage's output, which describes itself (models/build.py): it is all
that is read, no params.yaml. A pair's images become tensors as the decode stage's do, read from the
model, never retyped: resized to the vision tower's input size as `prepare` caches them, normalised
as `PairDataset` gives them (`data.dataset.image_tensor`). So a pair of a prepared split gets exactly
the caption `decode` wrote for it. Any image PIL reads will do: an alpha channel is dropped, a
greyscale or palette image expanded to RGB, and before and after may differ in size (each is resized
straight to the input size, as prepare does).

LIST is a CSV with a header `before,after` (and optionally `id`), or a JSON list of
{"before": ..., "after": ...(, "id": ...)}, or a JSON object {id: [before, after]}. Relative image
paths are relative to the list's folder. A pair's id is its `id`, else its position in the list,
counted from 0 ("0", "1", ...): before images repeat (one scene, several changes), positions do not.

Greedy decoding (the paper) or beam search (--beam-size), by the decode stage's functions
(generate.py). --max-len defaults to the checkpoint's `model.max_tokens`, the longest caption the
model was trained to write, <end> included; the decode stage's `decode.max_len` is the same number in
the embedded and paper profiles (24, 32); the smoke profile decodes 8 steps (--max-len 8).
No training code is imported.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "caption your own image pairs with a fine-tuned checkpoint (a tool: no params.yaml)"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("before", nargs="?", help="the before image (with AFTER; or --pairs)")
    p.add_argument("after", nargs="?", help="the after image")
    p.add_argument("--checkpoint", required=True, help="a fine-tuned checkpoint, the finetune stage's output "
                   "(models/<dataset>/finetune/<variant>/seed<seed>.pt)")
    p.add_argument("--pairs", default=None, help="a list of pairs, .csv or .json (see above), instead of BEFORE AFTER")
    p.add_argument("--out", default=None, help="with --pairs: the JSON {id: caption} to write")
    p.add_argument("--beam-size", type=_positive, default=1, help="1: greedy, as the paper (default); more: beam search")
    p.add_argument("--max-len", type=_positive, default=None,
                   help="tokens generated at most, <end> included (default: the checkpoint's model.max_tokens)")
    p.add_argument("--batch-size", type=_positive, default=64, help="pairs decoded together (default: 64)")


def run(args: argparse.Namespace) -> None:
    if args.pairs is not None:
        if args.before is not None or args.out is None:
            raise SystemExit("error: --pairs takes no BEFORE AFTER images and needs --out")
        pairs = read_pairs(args.pairs)
    else:
        if args.after is None or args.out is not None:
            raise SystemExit("error: give BEFORE AFTER (two images), or --pairs LIST --out OUT.json")
        pairs = {"0": (Path(args.before), Path(args.after))}
    captions = caption_pairs(args.checkpoint, pairs, max_len=args.max_len, beam_size=args.beam_size,
                             batch_size=args.batch_size, threads=args.threads, progress=args.progress)
    if args.pairs is None:
        print(captions["0"])
        return
    from ..io import write_json
    write_json(args.out, captions)


def read_pairs(path: str | Path) -> dict[str, tuple[Path, Path]]:
    """{id: (before, after)} of a list of pairs (.csv or .json, see the module's docstring), in its order."""
    from ..errors import PairListError
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no list of pairs at {path}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise PairListError(f"{path}: a list of pairs is a .csv or a .json file")
    rows = _csv_rows(path) if suffix == ".csv" else _json_rows(path)
    pairs: dict[str, tuple[Path, Path]] = {}
    for position, (where, pair_id, before, after) in enumerate(rows):
        if not (isinstance(before, str) and before and isinstance(after, str) and after):
            raise PairListError(f"{path}, {where}: expected a before and an after image path, got "
                                f"{before!r} and {after!r}")
        if pair_id is None or pair_id == "":
            pair_id = str(position)
        elif isinstance(pair_id, int) and not isinstance(pair_id, bool):
            pair_id = str(pair_id)
        elif not isinstance(pair_id, str):
            raise PairListError(f"{path}, {where}: an id is a string or an integer, got {pair_id!r}")
        if pair_id in pairs:
            raise PairListError(f"{path}, {where}: pair id {pair_id!r} appears twice")
        # Relative to the list's folder, so a list travels with its images; an absolute path stays as it is.
        pairs[pair_id] = (path.parent / before, path.parent / after)
    if not pairs:
        raise PairListError(f"{path} lists no pairs")
    return pairs


def _csv_rows(path: Path) -> list[tuple[str, object, object, object]]:
    import csv

    from ..errors import PairListError
    with path.open(encoding="utf-8-sig", newline="") as f:   # -sig: a spreadsheet's byte-order mark
        reader = csv.DictReader(f)
        if not {"before", "after"} <= set(reader.fieldnames or ()):
            raise PairListError(f"{path}: expected a header with columns before,after (and optionally id), "
                                f"got {reader.fieldnames}")
        return [(f"line {reader.line_num}", row.get("id"), row["before"], row["after"]) for row in reader]


def _json_rows(path: Path) -> list[tuple[str, object, object, object]]:
    import json

    from ..errors import PairListError
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PairListError(f"{path} is not valid JSON: {err}") from err
    if isinstance(data, dict):
        rows = []
        for pair_id, images in data.items():
            if not (isinstance(images, list) and len(images) == 2):
                raise PairListError(f"{path}, pair {pair_id!r}: expected [before, after], got {images!r}")
            rows.append((f"pair {pair_id!r}", pair_id, *images))
        return rows
    if isinstance(data, list):
        if not all(isinstance(item, dict) for item in data):
            raise PairListError(f"{path}: expected a list of {{\"before\": ..., \"after\": ...}} objects")
        return [(f"item {i}", item.get("id"), item.get("before"), item.get("after")) for i, item in enumerate(data)]
    raise PairListError(f"{path}: expected a list of pairs or an object {{id: [before, after]}}, "
                        f"got a JSON {type(data).__name__}")


class _ImagePairs:
    """The pairs as items of `data.dataset.collate` (a map-style dataset for a DataLoader); images are
    read when their batch is decoded."""

    def __init__(self, pairs: dict[str, tuple[Path, Path]], size: int):
        self.items, self.size = list(pairs.items()), size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        pair_id, (before, after) = self.items[index]
        return {"before": self._image(before), "after": self._image(after), "pair_id": pair_id}

    def _image(self, path: Path):
        from ..data.dataset import image_tensor
        from ..errors import ImageDecodeError
        try:
            return image_tensor(path, self.size)
        except Exception as err:  # PIL raises UnidentifiedImageError, OSError (truncated), SyntaxError, ...
            raise ImageDecodeError(f"{path} cannot be read as an image ({type(err).__name__}: {err})") from err


def caption_pairs(checkpoint: str | Path, pairs: dict[str, tuple[Path, Path]], *, max_len: int | None = None,
                  beam_size: int = 1, batch_size: int = 64, threads: int | None = None,
                  progress: bool = False) -> dict[str, str]:
    """{id: caption} for pairs {id: (before image, after image)}, decoded as the decode stage does."""
    from torch.utils.data import DataLoader

    from ..data.dataset import collate
    from ..generate import decode_dataset
    from ..models.build import load_caption_model
    from ..runtime import device, set_threads
    from ..text import CaptionTokenizer
    # A missing image fails before the model is built, naming its pair; an unreadable one when it is read.
    for pair_id, images in pairs.items():
        for which, image in zip(("before", "after"), images):
            if not image.is_file():
                of_pair = f" of pair {pair_id!r}" if len(pairs) > 1 else ""
                raise FileNotFoundError(f"the {which} image{of_pair} is missing: {image}")
    set_threads(threads)
    model, ckpt = load_caption_model(checkpoint)
    # The tower's input size is the prepared images' size: fine-tuning took them as they are (square).
    size = int(model.pair_encoder.visual.image_size[0])
    model.to(device())
    tokenizer = CaptionTokenizer(ckpt["model"]["arch"], ckpt["model"]["max_tokens"])
    loader = DataLoader(_ImagePairs(pairs, size), batch_size=batch_size, collate_fn=collate)
    return decode_dataset(model, loader, tokenizer, max_len or ckpt["model"]["max_tokens"], progress=progress,
                          beam_size=beam_size)
