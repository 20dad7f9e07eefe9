"""clip4idc: a reproducibility pipeline for CLIP4IDC (Guo, Wang, Laaksonen, AACL 2022)."""

__version__ = "0.1.0"
