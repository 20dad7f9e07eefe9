"""CLIP4IDC models: the pair encoder, the captioner, and the two trainable wholes built from them."""
from .build import create_clip, get_tokenizer, register_model_configs
from .captioner import Captioner
from .idc import AdaptModel, CaptionModel
from .pair_encoder import PairEncoder

__all__ = ["AdaptModel", "CaptionModel", "Captioner", "PairEncoder", "create_clip", "get_tokenizer",
           "register_model_configs"]
