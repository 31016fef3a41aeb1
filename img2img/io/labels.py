"""Label maps and instance maps as integer ids, never as colours: 8/16-bit grey PNGs and palette PNGs
read as ids, colour label maps mapped to ids through a palette (nearest colour), ids checked against a
model's range, and the network input SPADE builds from them (Park et al. 2019: one-hot labels, an
optional don't-care channel, an optional instance-boundary channel)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from img2img.errors import LabelError
from img2img.io.images import _check_pixels, _env_limit, _pillow_allows, _read_file, probe_size

Palette = list[tuple[int, int, int]]


@dataclass
class LabelSpec:
    """What a labels -> image model takes (stored in its card's `inputs`)."""

    label_nc: int  # class ids 0 .. label_nc - 1
    dontcare: int | None = None  # id that means "unlabelled" in the files (COCO-Stuff, ADE20K: 255); its own channel
    instance: bool = False  # an instance-boundary channel from an instance map
    palette: Palette = field(default_factory=list)  # colour of each class id, for colour label maps and painting
    classes: list[str] = field(default_factory=list)  # name of each class id
    z_dim: int = 0  # style latent of the generator (0 = none)
    style: bool = False  # the bundle has a style encoder `E`
    canvas: list[list[float]] = field(default_factory=list)  # a first scene to paint on: [[id, fraction], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.label_nc, int) or not 1 <= self.label_nc <= 65535:
            raise LabelError(f"label_nc must be a whole number in 1..65535, not {self.label_nc!r}")
        if self.dontcare is not None and not (isinstance(self.dontcare, int) and 0 <= self.dontcare <= 65535):
            raise LabelError(f"dontcare must be an id in 0..65535 or null, not {self.dontcare!r}")
        self.palette = [tuple(int(v) for v in c) for c in self.palette]  # type: ignore[misc]
        if self.palette and (len(self.palette) != self.label_nc or any(len(c) != 3 for c in self.palette)):
            raise LabelError(
                f"the palette must hold one RGB colour per class ({self.label_nc}), not {len(self.palette)}"
            )
        if self.classes and len(self.classes) != self.label_nc:
            raise LabelError(f"classes must name each of the {self.label_nc} classes, not {len(self.classes)}")

    @property
    def semantic_nc(self) -> int:
        """Input channels of the network: classes (+ don't-care) (+ instance edges)."""
        return self.label_nc + (self.dontcare is not None) + bool(self.instance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "labels", "label_nc": self.label_nc, "dontcare": self.dontcare, "instance": self.instance,
            "palette": [list(c) for c in self.palette], "classes": list(self.classes), "z_dim": self.z_dim,
            "style": self.style, "canvas": [list(r) for r in self.canvas],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelSpec:
        known = {"label_nc", "dontcare", "instance", "palette", "classes", "z_dim", "style", "canvas"}
        if "label_nc" not in d:
            raise LabelError("a labels model's card must give inputs.label_nc")
        return cls(**{k: v for k, v in d.items() if k in known})


# --- Reading ---


def _open(source: str | os.PathLike | bytes, name: str, max_pixels: int | None) -> Image.Image:
    data = source if isinstance(source, bytes) else _read_file(Path(source))
    try:
        width, height = probe_size(data)
    except Exception as e:  # noqa: BLE001 - any header problem is this file's problem
        raise LabelError(f"{name}: not a readable label image ({e})") from None
    _check_pixels(name, width, height, max_pixels or _env_limit())
    try:
        with _pillow_allows(width * height):
            im = Image.open(io.BytesIO(data))
            im.load()
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise LabelError(f"{name}: damaged or truncated label image ({type(e).__name__}: {e})") from None
    return im


def read_label_map(
    source: str | os.PathLike | bytes, spec: LabelSpec | None = None, *, name: str | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:  # fmt: skip
    """HxW int32 class ids of a label image: grey 8/16-bit ids and palette indices as they are, colour
    images through `spec.palette` (nearest colour, so JPEG noise and anti-aliasing snap to a class)."""
    name = name or (str(source) if not isinstance(source, bytes) else "label map")
    im = _open(source, name, max_pixels)
    if im.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        ids = np.asarray(im, dtype=np.int64)
        if ids.ndim != 2:
            raise LabelError(f"{name}: expected a single-channel label image, got shape {ids.shape}")
        ids = ids.astype(np.int32)
    elif im.mode in ("RGB", "RGBA", "LA"):
        if spec is None or not spec.palette:
            raise LabelError(
                f"{name}: a colour label map, but the model has no palette to map colours to class ids; "
                "give an 8-bit or 16-bit id PNG (one id per pixel)"
            )
        ids = map_colours(np.asarray(im.convert("RGB")), spec.palette)
    else:
        raise LabelError(f"{name}: unsupported label image mode {im.mode}; use an 8/16-bit id PNG")
    if spec is not None:
        check_ids(ids, spec, name)
    return ids


def read_instance_map(source: str | os.PathLike | bytes, *, name: str | None = None, max_pixels: int | None = None):
    """HxW int64 instance ids (Cityscapes 16-bit `instanceIds`, or any 8-bit id image)."""
    name = name or (str(source) if not isinstance(source, bytes) else "instance map")
    im = _open(source, name, max_pixels)
    if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise LabelError(f"{name}: an instance map must be a single-channel id image, not mode {im.mode}")
    return np.asarray(im, dtype=np.int64)


def map_colours(rgb: np.ndarray, palette: Palette) -> np.ndarray:
    """HxWx3 uint8 -> HxW int32: the id of the nearest palette colour per pixel (squared RGB distance)."""
    pal = np.asarray(palette, dtype=np.int32)
    flat = rgb.reshape(-1, 3).astype(np.int32)
    out = np.empty(flat.shape[0], dtype=np.int32)
    step = 1 << 18  # bounded memory: len(palette) distances per pixel, a chunk at a time
    for i in range(0, flat.shape[0], step):
        chunk = flat[i : i + step]
        d = ((chunk[:, None, :] - pal[None, :, :]) ** 2).sum(axis=2)
        out[i : i + step] = d.argmin(axis=1)
    return out.reshape(rgb.shape[:2])


def colourise(ids: np.ndarray, palette: Palette) -> np.ndarray:
    """HxW ids -> HxWx3 uint8 in the palette's colours (ids outside it black)."""
    pal = np.zeros((max(len(palette), int(ids.max(initial=0)) + 1), 3), np.uint8)
    pal[: len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)
    return pal[np.clip(ids, 0, len(pal) - 1)]


def check_ids(ids: np.ndarray, spec: LabelSpec, name: str) -> None:
    """Every id is a class or the don't-care id; otherwise a LabelError naming the file, id and range."""
    valid = (ids >= 0) & (ids < spec.label_nc)
    if spec.dontcare is not None:
        valid |= ids == spec.dontcare
    if not bool(valid.all()):
        bad = np.unique(ids[~valid])
        allowed = f"0..{spec.label_nc - 1}" + (f" or {spec.dontcare} (don't care)" if spec.dontcare is not None else "")
        raise LabelError(
            f"{name}: label id {int(bad[0])} is outside the model's classes {allowed}"
            + (f" ({len(bad)} bad ids: {', '.join(map(str, bad[:5].tolist()))})" if len(bad) > 1 else "")
        )


# --- Network input ---


def instance_edges(instances: np.ndarray) -> np.ndarray:
    """HxW float32, 1 where a pixel's instance id differs from a 4-neighbour's (the boundary map SPADE
    and pix2pixHD feed instead of the ids themselves)."""
    e = np.zeros(instances.shape, dtype=bool)
    horizontal = instances[:, 1:] != instances[:, :-1]
    vertical = instances[1:, :] != instances[:-1, :]
    e[:, 1:] |= horizontal
    e[:, :-1] |= horizontal
    e[1:, :] |= vertical
    e[:-1, :] |= vertical
    return e.astype(np.float32)


def semantic_input(ids: np.ndarray, spec: LabelSpec, instances: np.ndarray | None = None) -> np.ndarray:
    """CxHxW float32 network input: one-hot classes, then the don't-care channel, then instance edges."""
    if spec.instance and instances is None:
        raise LabelError("this model also takes an instance map (instance boundaries); give one per label map")
    if instances is not None and not spec.instance:
        raise LabelError("this model takes no instance map; leave it out")
    if instances is not None and instances.shape != ids.shape:
        raise LabelError(f"the instance map is {instances.shape[1]}x{instances.shape[0]}, the label map "
                         f"{ids.shape[1]}x{ids.shape[0]}: they must be the same size")  # fmt: skip
    channels = spec.semantic_nc
    out = np.zeros((channels, *ids.shape), dtype=np.float32)
    index = ids.astype(np.int64)
    if spec.dontcare is not None:
        index = np.where(ids == spec.dontcare, spec.label_nc, index)
    np.put_along_axis(out, index[None], 1.0, axis=0)
    if instances is not None:
        out[-1] = instance_edges(instances)
    return out


def snap_painting(rgb: np.ndarray, palette: Palette, min_share: float = 0.001) -> np.ndarray:
    """HxWx3 uint8 painting -> HxW ids. The classes painted are those whose exact colour covers at least
    `min_share` of the pixels; every pixel snaps to the nearest of THEIR colours, so anti-aliased stroke
    edges (blends of two colours) never become a third, phantom class."""
    flat = rgb.reshape(-1, 3).astype(np.int32)
    pal = np.asarray(palette, dtype=np.int32)
    code = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    pal_code = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    counts = np.array([(code == c).sum() for c in pal_code])
    present = np.flatnonzero(counts >= max(1, min_share * len(code)))
    if present.size == 0:
        present = np.arange(len(palette))
    ids = map_colours(rgb, [tuple(pal[i]) for i in present])
    return present[ids].astype(np.int32)


def starting_canvas(spec: LabelSpec, height: int, width: int) -> np.ndarray:
    """HxW ids of a first scene to paint on: the card's `canvas` rows ([[id, fraction], ...], top to
    bottom) if it has them, else class 0 over class 1 (e.g. sky over ground)."""
    rows = getattr(spec, "canvas", None) or ([[0, 0.6], [1, 0.4]] if spec.label_nc > 1 else [[0, 1.0]])
    ids = np.zeros((height, width), np.int32)
    top = 0
    for class_id, share in rows:
        bottom = min(height, top + round(share * height))
        ids[top:bottom] = int(class_id)
        top = bottom
    ids[top:] = int(rows[-1][0])
    return ids
