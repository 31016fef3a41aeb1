"""Label map -> photo training data (SPADE, Park et al. 2019): id PNG folders matched by scene
(COCO-Stuff, ADE20K, Cityscapes `labelIds` + 16-bit `instanceIds`), or side-by-side photo | colour label
images (CMP facades) mapped to ids by nearest palette colour. Label and instance maps are resized with
nearest neighbours (albumentations mask targets), photos bicubic, and all are cropped and flipped together."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from img2img.data.base import SeededDataset, list_images, read_rgb
from img2img.errors import ConfigError, LabelError
from img2img.io.labels import LabelSpec, check_ids, instance_edges, map_colours, read_instance_map, read_label_map

log = logging.getLogger(__name__)
# Sub-folder names tried under data.root for each role (ours, then NVlabs / pix2pixHD names).
ROLE_DIRS = {
    "labels": ("labels", "train_label", "label"),
    "images": ("images", "train_img", "img"),
    "instances": ("instances", "train_inst", "inst"),
}


@dataclass
class LabelDataConfig:
    root: str = ""  # folders: parent of labels/ + images/ (+ instances/); aligned: folder of photo|label images
    layout: Literal["folders", "aligned"] = "folders"
    label_dir: str | None = None  # folders: explicit label folder (default ROOT/labels or ROOT/train_label)
    image_dir: str | None = None  # folders: explicit photo folder (default ROOT/images or ROOT/train_img)
    instance_dir: str | None = None  # folders with instance: true (default ROOT/instances or ROOT/train_inst)
    label_side: Literal["left", "right"] = "right"  # aligned: the half holding the label map (facades: right)
    label_nc: int | None = None  # classes 0..label_nc-1; null = len(palette), or scanned from the label maps
    dontcare: int | None = None  # id meaning "unlabelled" (COCO-Stuff, ADE20K: 255): its own input channel
    instance: bool = False  # add the instance-boundary channel from instance maps
    palette: str | list[list[int]] | None = None  # colour label maps: a named palette (facades) or RGB per id
    classes: list[str] = field(default_factory=list)  # class names (default: the named palette's)
    preprocess: Literal["resize_and_crop", "scale_width_and_crop", "fixed"] = "resize_and_crop"
    load_size: int = 286  # resize_and_crop: square; scale_width_and_crop: the width; fixed: the width
    crop_size: int = 256  # random crop (square); fixed: the output width
    aspect_ratio: float = 1.0  # fixed: width / height (Cityscapes 2.0)
    flip: bool = True
    max_dataset_size: int | None = None
    albumentations: list[dict[str, Any]] = field(default_factory=list)  # extra transforms, same draw for all

    def __post_init__(self) -> None:
        if not self.root and not (self.layout == "folders" and self.label_dir and self.image_dir):
            raise ConfigError("data.root is empty: give the training folder (or data.label_dir and data.image_dir)")
        if self.load_size < 1 or self.crop_size < 1 or not self.aspect_ratio > 0:
            raise ConfigError("data.load_size, data.crop_size and data.aspect_ratio must be positive")
        if self.preprocess != "fixed" and self.crop_size > self.load_size:
            raise ConfigError(f"data.crop_size ({self.crop_size}) is larger than data.load_size ({self.load_size})")
        if self.layout == "aligned" and self.instance:
            raise ConfigError("data.instance: side-by-side (aligned) pairs carry no instance maps; use layout: folders")
        if self.max_dataset_size is not None and self.max_dataset_size < 1:
            raise ConfigError(f"data.max_dataset_size must be >= 1 (or null), got {self.max_dataset_size}")
        self.colours()  # an unknown palette name or a bad colour fails at load time
        if self.label_nc is not None:
            self.spec(self.label_nc)

    def colours(self) -> tuple[list[tuple[int, int, int]], list[str]]:
        """(palette, class names) from `palette` and `classes`."""
        from img2img.data.palettes import named_palette

        if self.palette is None:
            return [], list(self.classes)
        if isinstance(self.palette, str):
            palette, classes = named_palette(self.palette)
        else:
            if any(not isinstance(c, list | tuple) or len(c) != 3 for c in self.palette):
                raise ConfigError("data.palette: give one [R, G, B] per class id")
            palette, classes = [tuple(int(v) for v in c) for c in self.palette], []
        return palette, list(self.classes) or classes

    def spec(self, label_nc: int) -> LabelSpec:
        palette, classes = self.colours()
        try:
            return LabelSpec(label_nc, self.dontcare, self.instance, palette, classes)
        except LabelError as e:
            raise ConfigError(f"data (label_nc {label_nc}, palette, classes): {e}") from None

    def output_hw(self) -> tuple[int, int]:
        """(H, W) of every training sample."""
        if self.preprocess == "fixed":
            return round(self.crop_size / self.aspect_ratio), self.crop_size
        return self.crop_size, self.crop_size


@dataclass(frozen=True)
class LabelItem:
    key: str
    label: Path  # aligned: the side-by-side file
    image: Path | None = None  # None: aligned
    instance: Path | None = None


def _role_dir(cfg: LabelDataConfig, role: str, explicit: str | None) -> Path:
    from img2img.io.files import subfolder

    if explicit:
        return Path(explicit).expanduser()
    root = Path(cfg.root).expanduser()
    for name in ROLE_DIRS[role]:
        found = subfolder(root, name)
        if found is not None:
            return found
    raise ConfigError(
        f"data: no {role} folder under {root} (looked for {', '.join(ROLE_DIRS[role])}); "
        f"set data.{role[:-1] if role != 'images' else 'image'}_dir"
    )


def label_items(cfg: LabelDataConfig) -> list[LabelItem]:
    """The samples: aligned files, or label/photo(/instance) files matched by scene name (the stem
    without role suffixes such as `_gtFine_labelIds` / `_leftImg8bit`)."""
    from img2img.io.files import match_files, scene_key

    if cfg.layout == "aligned":
        root = Path(cfg.root).expanduser()
        return [LabelItem(p.stem, p) for p in list_images(root, role="photo|label")[: cfg.max_dataset_size]]
    folders = {"labels": _role_dir(cfg, "labels", cfg.label_dir), "images": _role_dir(cfg, "images", cfg.image_dir)}
    if cfg.instance:
        folders["instances"] = _role_dir(cfg, "instances", cfg.instance_dir)
    what = {"labels": "label map", "images": "photo", "instances": "instance map"}
    files = {role: list_images(where, role=what[role]) for role, where in folders.items()}
    matched = match_files(
        files,
        lambda p, root: scene_key(p.relative_to(root).with_suffix("").as_posix()),
        what="label data",
        rule="label maps, photos and instance maps are matched by scene name",
    )
    keys = sorted(matched)[: cfg.max_dataset_size]
    return [LabelItem(k, m["labels"], m["images"], m.get("instances")) for k, m in ((k, matched[k]) for k in keys)]


def read_pair(item: LabelItem, cfg: LabelDataConfig, spec: LabelSpec | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(HxW int32 ids, HxWx3 float photo in [0, 1]), or None when the photo is unreadable (logged; the
    sample is skipped). Ids are checked against `spec` when given."""
    if item.image is None:
        both = read_rgb(item.label)
        if both is None:
            return None
        half = both.shape[1] // 2
        photo, colour = (
            (both[:, :half], both[:, half:]) if cfg.label_side == "right" else (both[:, half:], both[:, :half])
        )
        palette = spec.palette if spec is not None else cfg.colours()[0]
        if not palette:
            raise ConfigError("data.palette: side-by-side pairs hold colour label maps; name their palette (facades)")
        ids = map_colours(np.rint(colour * 255).astype(np.uint8), palette)
        if spec is not None:
            check_ids(ids, spec, str(item.label))
        return ids, photo
    ids = read_label_map(item.label, spec)
    photo = read_rgb(item.image)
    if photo is None:
        return None
    if photo.shape[:2] != ids.shape:
        raise LabelError(
            f"{item.label.name} is {ids.shape[1]}x{ids.shape[0]} but its photo {item.image.name} is "
            f"{photo.shape[1]}x{photo.shape[0]}: a label map and its photo must have the same size"
        )
    return ids, photo


def scan_label_nc(cfg: LabelDataConfig, items: list[LabelItem]) -> tuple[int, str]:
    """label_nc for a config without one: len(palette), or the largest id found + 1; and a report."""
    palette, _ = cfg.colours()
    if palette:
        return len(palette), f"data.label_nc = {len(palette)} (one class per colour of the palette)"
    seen: set[int] = set()
    for item in items:
        seen.update(np.unique(read_label_map(item.label)).tolist())
    seen.discard(cfg.dontcare)
    if not seen:
        raise ConfigError("data.label_nc: the label maps hold no class ids (only don't-care); set data.label_nc")
    label_nc = max(seen) + 1
    missing = label_nc - len(seen)
    return label_nc, (
        f"data.label_nc not set: scanned {len(items)} label maps, ids 0..{label_nc - 1} "
        f"({len(seen)} present{f', {missing} never used' if missing else ''}"
        + (f"; {cfg.dontcare} is don't care" if cfg.dontcare is not None else "")
        + f"), so label_nc = {label_nc}; set data.label_nc to fix it (e.g. when some classes are rare)"
    )


class LabelDataset(SeededDataset):
    """Sample (None when a file is unreadable) -> {"label": HxW int64 ids, "image": CHW float32 in
    [-1, 1], "key": str} (+ "instance": HxW float32 instance-boundary map).
    Ids outside `spec` raise a LabelError naming the file, the id and the allowed range."""

    def __init__(self, cfg: LabelDataConfig, spec: LabelSpec, seed: int = 0, items: list[LabelItem] | None = None):
        super().__init__(seed)
        self.cfg, self.spec = cfg, spec
        self.items = items if items is not None else label_items(cfg)
        self._pipelines: dict[tuple, Any] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _pipeline(self, h: int, w: int, train: bool) -> Any:
        import cv2

        from img2img.data.transforms import PairedAlbumentations

        c = self.cfg
        if c.preprocess == "resize_and_crop":
            size = (c.load_size, c.load_size)
        elif c.preprocess == "scale_width_and_crop":
            size = (max(c.crop_size, round(c.load_size * h / w)), c.load_size)
        else:
            size = c.output_hw()
        key = (size, train)
        if key not in self._pipelines:
            steps: list[Any] = [
                {"name": "Resize", "height": size[0], "width": size[1], "interpolation": cv2.INTER_CUBIC}
            ]
            if c.preprocess != "fixed":
                steps.append(
                    {"name": "RandomCrop" if train else "CenterCrop", "height": c.crop_size, "width": c.crop_size}
                )
            if train and c.flip:
                steps.append({"name": "HorizontalFlip", "p": 0.5})
            steps += list(c.albumentations) if train else []
            self._pipelines[key] = PairedAlbumentations(steps, {"labels": "mask", "instances": "mask"})
        return self._pipelines[key]

    def sample(self, index: int, *, train: bool = True) -> dict[str, Any] | None:
        item = self.items[index]
        pair = read_pair(item, self.cfg, self.spec)
        if pair is None:
            return None
        ids, photo = pair
        inst = np.zeros(ids.shape, np.uint16)
        if item.instance is not None:
            raw = read_instance_map(item.instance)
            if raw.shape != ids.shape:
                raise LabelError(
                    f"{item.instance.name} is {raw.shape[1]}x{raw.shape[0]}, its label map "
                    f"{ids.shape[1]}x{ids.shape[0]}: they must be the same size"
                )
            inst = np.unique(raw, return_inverse=True)[1].reshape(raw.shape).astype(np.uint16)  # only equality matters
        photo, lab, inst = self._pipeline(*ids.shape, train)(photo, ids.astype(np.uint16), inst, rng=self.rng(index))
        out = {
            "label": torch.from_numpy(np.ascontiguousarray(lab, dtype=np.int64)),
            "image": torch.from_numpy(np.ascontiguousarray(np.clip(photo, 0, 1).transpose(2, 0, 1))) * 2 - 1,
            "key": item.key,
        }
        if self.spec.instance:
            out["instance"] = torch.from_numpy(instance_edges(inst))
        return out

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        if not 0 <= index < len(self):
            raise IndexError(f"LabelDataset index {index} out of range (len {len(self)})")
        return self.sample(index)
