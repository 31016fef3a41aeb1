"""Training datasets and their helpers: SR patches (HR folders or paired LR/HR folders), blind
degradations, paired augmentation, and `skip_collate` for samples whose file cannot be read."""

from __future__ import annotations

from img2img.data.base import SeededDataset, list_images, read_rgb, skip_collate
from img2img.data.degradations import DegradationConfig, degrade
from img2img.data.sr import SRDataConfig, SRDataset
from img2img.data.transforms import PairedAlbumentations, augment_pair, paired_random_crop, random_crop

__all__ = [
    "DegradationConfig",
    "PairedAlbumentations",
    "SRDataConfig",
    "SRDataset",
    "SeededDataset",
    "augment_pair",
    "degrade",
    "list_images",
    "paired_random_crop",
    "random_crop",
    "read_rgb",
    "skip_collate",
]
