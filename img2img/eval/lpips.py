"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"), the
AlexNet variant of release v0.1: ImageNet AlexNet features at its five ReLUs, each unit-normalised over
channels, squared differences weighted per channel by learned 1x1 layers, averaged over space and summed over
layers. Two local files hold the weights, never downloaded at run time: torchvision's AlexNet
(`alexnet-owt-7be5be79.pth`, whose `features.N` tensors load here as they are) and the LPIPS linear layers
(`weights/v0.1/alex.pth` of the lpips release, keys `linK.model.1.weight`)."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from img2img.errors import Img2ImgError, WeightsError, load_refusal

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
BACKBONE_URL = f"https://download.pytorch.org/models/{BACKBONE_FILE}"
BACKBONE_SHA256_PREFIX = "7be5be79"  # torchvision names its files by their sha256's first 8 hex digits
LINEAR_FILE = "alex.pth"
LINEAR_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
LINEAR_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"  # v0.1 alex.pth (6,009 bytes)

CHANNELS = (64, 192, 384, 256, 256)  # the five ReLU taps
TAPS = (1, 4, 7, 9, 11)  # their indices in torchvision's `alexnet().features`
# v0.1 input scaling: (x - shift) / scale maps [-1, 1] images to the ImageNet-normalised range AlexNet expects.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # added to the channel norm before dividing
MIN_SIDE = 31  # smaller images vanish in AlexNet's second max pool


def _alexnet_features() -> nn.Sequential:
    """torchvision's `alexnet().features` up to the last ReLU (the final max pool feeds no tap), same indices."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),  # 0, 1
        nn.MaxPool2d(3, stride=2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 2, 3, 4
        nn.MaxPool2d(3, stride=2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 5, 6, 7
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 8, 9
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 10, 11
    )  # fmt: skip


def _unit(x: Tensor) -> Tensor:
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + EPS)


class LPIPSAlex(nn.Module):
    """`forward(x, y)`: N x 3 x H x W images in [-1, 1] -> N distances (0 for identical images)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def taps(self, x: Tensor) -> list[Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in TAPS:
                out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS compares two N x 3 x H x W batches of one shape, not {x.shape} and {y.shape}")
        n = x.shape[0]
        total = x.new_zeros(n)
        for f, lin in zip(self.taps(torch.cat([x, y])), self.lins, strict=True):
            d = (_unit(f[:n]) - _unit(f[n:])).pow(2)
            total = total + lin(d).mean((1, 2, 3))
        return total


@dataclass(frozen=True)
class LPIPSWeights:
    """Where the two files are and what they are (sha256), for reports."""

    backbone: Path
    linear: Path
    backbone_sha256: str
    linear_sha256: str

    @property
    def published(self) -> bool:
        """Whether both are the released files, i.e. the values are comparable with published LPIPS numbers."""
        return self.backbone_sha256.startswith(BACKBONE_SHA256_PREFIX) and self.linear_sha256 == LINEAR_SHA256

    def to_dict(self) -> dict:
        return {
            "net": "alex", "version": "0.1", "backbone": str(self.backbone), "backbone_sha256": self.backbone_sha256,
            "linear": str(self.linear), "linear_sha256": self.linear_sha256, "published": self.published,
        }  # fmt: skip


def weights_dir() -> Path:
    """The weights cache folder (`$IMG2IMG_HOME/weights/`), the same as the FID Inception's."""
    from img2img.eval.inception import default_weights_path

    return default_weights_path().parent


def packaged_linear() -> Path | None:
    """The linear layers shipped inside an installed `lpips` package (found without importing it), if any."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "weights" / "v0.1" / LINEAR_FILE
        if path.is_file():
            return path
    return None


def missing_weights_hint() -> str:
    folder = weights_dir()
    return (
        "LPIPS (AlexNet, v0.1) needs two local files, never downloaded at run time: the torchvision AlexNet "
        f"{BACKBONE_FILE} ({BACKBONE_URL}) as --lpips-backbone FILE or {folder / BACKBONE_FILE}, and the LPIPS "
        f"linear layers {LINEAR_FILE} (lpips/weights/v0.1/{LINEAR_FILE} of the lpips release, {LINEAR_URL}; "
        f"`pip install lpips` ships it) as --lpips-linear FILE or {folder / LINEAR_FILE} ($IMG2IMG_HOME/weights/)"
    )


def find_weights(backbone: str | Path | None = None, linear: str | Path | None = None) -> tuple[Path, Path]:
    """The two files: the given paths, else the weights cache folder (the linear layers also from an
    installed lpips package). Raises WeightsError naming every missing file and where it goes."""
    folder = weights_dir()
    for given, flag in ((backbone, "--lpips-backbone"), (linear, "--lpips-linear")):
        if given is not None and not Path(given).expanduser().is_file():
            raise WeightsError(f"{flag} {given}: no such file. {missing_weights_hint()}")
    b = Path(backbone).expanduser() if backbone is not None else folder / BACKBONE_FILE
    lin = Path(linear).expanduser() if linear is not None else folder / LINEAR_FILE
    if linear is None and not lin.is_file():
        lin = packaged_linear() or lin
    missing = [p for p in (b, lin) if not p.is_file()]
    if missing:
        raise WeightsError(f"LPIPS weights not found: {' and '.join(map(str, missing))}. {missing_weights_hint()}")
    return b, lin


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read(path: Path, what: str) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors come in many types
        raise WeightsError(load_refusal(path, what, e, f"Use the released file. {missing_weights_hint()}")) from None
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors for {what}, got {type(sd).__name__}")
    return sd


def _take(sd: dict, key: str, shape: tuple[int, ...], path: Path, what: str) -> Tensor:
    t = sd.get(key)
    if t is None:
        raise WeightsError(f"{path}: not {what}: no tensor {key!r} (has {sorted(sd)[:4]}...). {missing_weights_hint()}")
    if tuple(t.shape) != shape:
        raise WeightsError(f"{path}: not {what}: {key} is {tuple(t.shape)}, expected {shape}")
    return t.float()


def load_lpips(backbone: str | Path, linear: str | Path) -> tuple[LPIPSAlex, LPIPSWeights]:
    """Build `LPIPSAlex` from the two files (read with `torch.load(weights_only=True)`; other keys, such as the
    AlexNet classifier, are ignored), in evaluation mode, with what was loaded."""
    backbone, linear = Path(backbone).expanduser(), Path(linear).expanduser()
    net = LPIPSAlex()
    sd = _read(backbone, "the AlexNet backbone")
    with torch.no_grad():
        for i, m in enumerate(net.features):
            if isinstance(m, nn.Conv2d):
                for name, p in (("weight", m.weight), ("bias", m.bias)):
                    p.copy_(_take(sd, f"features.{i}.{name}", tuple(p.shape), backbone, "the torchvision AlexNet"))
        sd = _read(linear, "the LPIPS linear layers")
        for k, lin in enumerate(net.lins):
            lin.weight.copy_(_take(sd, f"lin{k}.model.1.weight", tuple(lin.weight.shape), linear, "LPIPS alex v0.1"))
    info = LPIPSWeights(backbone, linear, _sha256(backbone), _sha256(linear))
    return net.eval().requires_grad_(False), info


def image_distance(net: LPIPSAlex, out: np.ndarray, target: np.ndarray) -> float:
    """LPIPS between two HxWx3 images in [0, 1], quantised to 8 bits first like the other paired metrics."""
    if out.shape != target.shape or out.ndim != 3 or out.shape[2] != 3:
        raise Img2ImgError(f"LPIPS compares two RGB images of one size, not {out.shape} and {target.shape}")
    if min(out.shape[:2]) < MIN_SIDE:
        raise Img2ImgError(
            f"LPIPS needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, not {out.shape[1]}x{out.shape[0]}"
        )
    device = net.shift.device
    x, y = [
        torch.from_numpy(np.round(np.clip(a, 0, 1) * 255) / 127.5 - 1).float().permute(2, 0, 1)[None].to(device)
        for a in (out, target)
    ]
    with torch.no_grad():
        return float(net(x, y)[0])
