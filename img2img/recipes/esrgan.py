"""ESRGAN (Wang et al. 2018): stage 1 trains RRDBNet with L1 only (PSNR-oriented); stage 2 starts from
it and adds VGG19 conv5_4 features before activation (weight 1) and the relativistic average GAN
(eq. 1-2, weight 5e-3) with L1 at 1e-2. A config without `model.D` is stage 1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from img2img.config import ArchSpec, arch_kwargs, num
from img2img.data.sr import SRDataConfig
from img2img.errors import ConfigError
from img2img.recipes.base import Batch, ImageRow, Nets, Phase, Recipe
from img2img.recipes.diffaug import Policy

# Below this L1 weight, with untrained VGG features, nothing ties the output to the target's content:
# under Adam the adversarial term then steers G on its own and PSNR falls apart within a few hundred steps.
MIN_PIXEL_WITH_RANDOM_VGG = 0.1


def _rrdb(**kw: Any) -> ArchSpec:
    return ArchSpec({"arch": "RRDBNet", "nf": 64, "nb": 23, "gc": 32, "scale": 4, **kw})


@dataclass
class ModelConfig:
    G: ArchSpec = field(default_factory=_rrdb)  # RRDBNet or SRVGGNetCompact
    D: ArchSpec | None = None  # VGGStyleDiscriminator / UNetDiscriminatorSN; null = PSNR stage


@dataclass
class LossConfig:
    pixel: float = num(1.0, ge=0.0)  # L1 weight: 1 in stage 1, 1e-2 in stage 2
    pixel_criterion: Literal["l1", "l2"] = "l1"
    perceptual: float = num(0.0, ge=0.0)  # VGG19 feature loss weight (stage 2: 1.0)
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})  # before ReLU
    gan: float = num(0.0, ge=0.0)  # adversarial weight for G (stage 2: 5e-3)
    gan_kind: Literal["vanilla", "lsgan", "hinge", "relativistic"] = "relativistic"
    vgg_weights: str | None = None  # ImageNet VGG19 .pth/.safetensors; null = torch hub cache
    allow_random_vgg: bool = False  # accept untrained VGG features (recorded in exported cards)
    diffaugment: list[Policy] = field(default_factory=list)  # D inputs: color, translation, cutout


@dataclass
class OptimConfig:
    lr_G: float = num(2e-4, gt=0.0)
    lr_D: float = num(1e-4, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam, as the paper
    d_every: int = num(1, gt=0)  # train D on every N-th step


@dataclass
class ValConfig:
    hr_dir: str | None = None  # HR images (*_LR files ignored); LR by MATLAB bicubic; PSNR/SSIM on Y
    max_images: int = num(10, gt=0)
    max_size: int = num(0, ge=0)  # centre-crop HR to at most this many pixels per side (0 = whole)


@dataclass
class ESRGANConfig:
    data: SRDataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)


class ESRGANRecipe(Recipe):
    name = "esrgan"
    Config = ESRGANConfig
    finetune_config = "esrgan/finetune_x4"

    @classmethod
    def finetune(cls, raw: dict[str, Any], card: Any, weights: str, data: Any, options: dict[str, Any]) -> None:
        from img2img.recipes.finetune import generator_spec, sr_data

        hr, lr = sr_data(data, options.get("lr"))
        raw["model"] = {**raw.get("model", {}), "G": generator_spec(card)}
        section = raw.setdefault("data", {})
        section.update({"hr_dirs": [str(hr)], "lr_dirs": [str(lr)] if lr else None, "scale": int(card.scale)})
        if lr:
            section["degradation"] = "bicubic"  # unused with paired files, but must be the default
        raw.setdefault("train", {})["init_from"] = {"G": weights}
        raw.pop("val", None)  # the original run's held-out data is not the user's

    def __init__(self, cfg: ESRGANConfig, *, seed: int = 0) -> None:
        super().__init__(cfg, seed=seed)
        self.check_config(cfg)
        self.g_kwargs = arch_kwargs(cfg.model.G)
        self.scale = int(self.g_kwargs.get("scale", 4))
        self.gan_stage = cfg.model.D is not None
        self.vgg: nn.Module | None = None
        self.vgg_pretrained: bool | None = None  # known once the perceptual loss is built
        self.gan_loss: nn.Module | None = None

    @classmethod
    def check_config(cls, cfg: ESRGANConfig) -> None:
        loss, d = cfg.loss, cfg.model.D
        scale = arch_kwargs(cfg.model.G).get("scale", 4)
        if scale != cfg.data.scale:
            raise ConfigError(f"model.G.scale ({scale}) and data.scale ({cfg.data.scale}) must match")
        if d is None and loss.gan > 0:
            raise ConfigError("loss.gan > 0 needs a discriminator: set model.D (e.g. arch: VGGStyleDiscriminator)")
        if d is not None and loss.gan == 0:
            raise ConfigError("model.D is set but loss.gan is 0: set loss.gan (ESRGAN: 5e-3) or model.D=null")
        if d is None and loss.diffaugment:
            raise ConfigError("loss.diffaugment augments what the discriminator sees: it needs model.D")
        if d is not None and d.arch == "VGGStyleDiscriminator":
            size = arch_kwargs(d).get("input_size", 128)
            if size != cfg.data.patch_size:
                raise ConfigError(
                    f"model.D.input_size ({size}) must equal data.patch_size ({cfg.data.patch_size}): "
                    "the VGG-style discriminator sees whole HR patches"
                )
        if loss.pixel + loss.perceptual + loss.gan == 0:
            raise ConfigError("loss: every weight is 0; set at least loss.pixel")

    # ---- networks and phases
    def build_networks(self) -> Nets:
        nets = {"G": self.cfg.model.G.build()}
        if self.gan_stage:
            nets["D"] = self.cfg.model.D.build()
        return nets

    def phases(self) -> list[Phase]:
        o = self.cfg.optim
        out = [Phase("G", ["G"], lr=o.lr_G, betas=o.betas)]
        if self.gan_stage:
            out.append(Phase("D", ["D"], lr=o.lr_D, betas=o.betas, every=o.d_every))
        return out

    def aux_modules(self) -> dict[str, nn.Module]:
        from img2img.losses import GANLoss, PerceptualLoss

        loss = self.cfg.loss
        if loss.perceptual > 0:
            try:
                self.vgg = PerceptualLoss(
                    loss.perceptual_layers,
                    weights_path=loss.vgg_weights,
                    allow_random_init=loss.allow_random_vgg,
                )
            except ConfigError as e:
                raise ConfigError(f"loss.vgg_weights / loss.allow_random_vgg: {e}") from e
            self.vgg_pretrained = bool(self.vgg.pretrained)
            if not self.vgg_pretrained and self.gan_stage and loss.pixel < MIN_PIXEL_WITH_RANDOM_VGG:
                self.notes.append(
                    f"warning: loss.perceptual uses untrained VGG19 features, which do not measure content, and "
                    f"loss.pixel is only {loss.pixel:g}: the GAN term will dominate and the outputs drift from the "
                    "targets. Without ImageNet weights use loss.pixel=1 and loss.perceptual=0 "
                    "(configs/esrgan/small_gan_x4_novgg.yaml)"
                )
        if self.gan_stage:
            self.gan_loss = GANLoss(loss.gan_kind)
            self.build_diffaug(self.cfg.loss.diffaugment, (0.0, 1.0))
        return {k: v for k, v in {"vgg": self.vgg, "gan": self.gan_loss}.items() if v is not None}

    def make_dataset(self) -> torch.utils.data.Dataset:
        from img2img.data.sr import SRDataset

        return SRDataset(self.cfg.data, seed=self.seed)

    # Whether the perceptual features were ImageNet ones travels with the checkpoint to the card.
    def state_dict(self) -> dict[str, Any]:
        return {} if self.vgg_pretrained is None else {"vgg_pretrained": self.vgg_pretrained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vgg_pretrained = state.get("vgg_pretrained", self.vgg_pretrained)

    # ---- losses
    def losses(self, phase: str, batch: Batch, nets: Nets, scratch: dict[str, Any]) -> dict[str, torch.Tensor]:
        loss, lr, hr = self.cfg.loss, batch["lr"], batch["hr"]
        if phase == "G":
            sr = nets["G"](lr)
            scratch["sr"] = sr
            terms = {}
            if loss.pixel > 0:
                crit = F.l1_loss if loss.pixel_criterion == "l1" else F.mse_loss
                terms[loss.pixel_criterion] = loss.pixel * crit(sr.float(), hr.float())
            if loss.perceptual > 0:
                terms["vgg"] = loss.perceptual * self.vgg(sr, hr)
            if self.gan_stage and loss.gan > 0:
                fake_logits = nets["D"](self.d_input(sr))
                real_logits = nets["D"](self.d_input(hr)).detach()
                terms["gan"] = loss.gan * self.gan_loss.g_loss(fake_logits, real_logits)
            return terms
        if phase == "D":
            sr = scratch["sr"].detach() if "sr" in scratch else nets["G"](lr).detach()
            d, real, fake = nets["D"], self.d_input(hr), self.d_input(sr)
            return {"gan": self.gan_loss.d_loss(d(real), d(fake))}
        raise KeyError(f"esrgan has no phase {phase!r}")

    # ---- samples, validation, export
    @torch.no_grad()
    def sample_images(self, batch: Batch, nets: Nets) -> list[ImageRow]:
        from img2img.recipes.base import upsample_to

        lr, hr = batch["lr"][:4], batch["hr"][:4]
        sr = nets["G"](lr).float().clamp(0, 1)
        return [[upsample_to(lr[i], hr.shape[-2:]), sr[i], hr[i]] for i in range(len(lr))]

    @torch.no_grad()
    def validate(self, nets: Nets, device: torch.device) -> dict[str, float]:
        val = self.cfg.val
        if not val.hr_dir:
            return {}
        from img2img.data.base import list_images, read_rgb
        from img2img.eval.metrics import psnr, ssim
        from img2img.io.resize import imresize

        s, psnrs, ssims = self.scale, [], []
        # Benchmark folders keep X_LR next to X_HR: only HR files are ground truth here.
        files = [p for p in list_images(val.hr_dir, role="val.hr_dir") if not p.stem.upper().endswith("_LR")]
        for path in files[: val.max_images]:
            hr = read_rgb(path)
            if hr is None:
                continue
            hr = _centre_crop(hr, val.max_size)
            hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
            lr = np.clip(imresize(hr, 1 / s), 0, 1).astype(np.float32)
            x = torch.from_numpy(lr.transpose(2, 0, 1))[None].to(device)
            sr = nets["G"](x).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
            psnrs.append(psnr(sr, hr, crop_border=s, y_channel=True))
            ssims.append(ssim(sr, hr, crop_border=s, y_channel=True))
        if not psnrs:
            return {}
        return {
            "psnr_y": float(np.mean(psnrs)),
            "ssim_y": float(np.mean(ssims)),
            "val_images": float(len(psnrs)),
        }

    def export_card(self, net: str) -> dict[str, Any] | None:
        if net != "G":
            return None
        with torch.device("meta"):
            size_multiple = int(getattr(self.cfg.model.G.build(), "size_multiple", 1))
        loss = self.cfg.loss
        vgg = None
        if loss.perceptual > 0:
            vgg = "imagenet" if self.vgg_pretrained else "random-init (loss.allow_random_vgg=true)"
        val, s = self.cfg.val, self.scale
        protocol = (
            f"{val.hr_dir}: first {val.max_images} HR images (*_LR skipped), cropped to a multiple of {s}"
            + (f" and centre {val.max_size} px" if val.max_size else "")
            + f"; LR = MATLAB bicubic 1/{s}; PSNR/SSIM on Y (BT.601), border {s} px cropped"
        )
        return {
            "metrics_protocol": protocol,
            "arch": self.cfg.model.G.arch,
            "arch_kwargs": self.g_kwargs,
            "task": "upscale",
            "scale": self.scale,
            "in_channels": int(self.g_kwargs.get("in_ch", 3)),
            "out_channels": int(self.g_kwargs.get("out_ch", 3)),
            "value_range": (0.0, 1.0),
            "size_multiple": size_multiple,
            "training": {
                "stage": "gan" if self.gan_stage else "psnr",
                "losses": {"pixel": loss.pixel, "perceptual": loss.perceptual, "gan": loss.gan},
                "perceptual_vgg": vgg,
            },
        }

    def data_description(self) -> dict[str, Any]:
        d = self.cfg.data
        return {
            "hr_dirs": list(d.hr_dirs),
            "lr_dirs": list(d.lr_dirs) if d.lr_dirs else None,
            "degradation": d.degradation,
            "patch_size": d.patch_size,
            "scale": d.scale,
        }


def _centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return img
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[top : top + size, left : left + size]
