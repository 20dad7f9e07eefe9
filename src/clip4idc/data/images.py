"""An image as the model sees it, defined once: an image file → the pixels the `prepare` stage caches.

RGB (an alpha channel is dropped, a greyscale or palette image expanded), resized straight to
size×size with bicubic, no crop, uint8 [S, S, 3] (PAPER.md §2). `prepare` writes these pixels into
its image cache; `data.dataset.to_tensor` turns them into the tensor the vision tower takes, both for
a prepared split (`Prepared.image`) and for any image file (`data.dataset.image_tensor`, which
`clip4idc caption` uses), so a pair captioned from its PNGs gets exactly the tensors of the cache.
Only numpy and PIL here: prepare and its worker processes never import torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def load_image(path: str | Path, size: int) -> np.ndarray:
    """An image as the model sees it: RGB, resized straight to size×size with bicubic, uint8."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)
