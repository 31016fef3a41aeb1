"""pix2pix (Isola et al. 2017): a U-Net generator G and a conditional PatchGAN D that judges the
pair (input, output). G minimises the cGAN loss + lambda * L1 (eq. 4, lambda = 100); D's loss is
halved (Sec. 3.3). Without `model.D` (and `loss.gan: 0`) this is the paper's L1-only baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from img2img.config import ArchSpec, arch_kwargs, num
from img2img.data.paired import PairedDataConfig
from img2img.errors import ConfigError
from img2img.recipes.base import Batch, ImageRow, Nets, Phase, Recipe
from img2img.recipes.diffaug import Policy
from img2img.recipes.translation import (
    Domains,
    InitConfig,
    TranslateVal,
    build,
    image_metrics,
    mean_metrics,
    run_padded,
    size_multiple,
    test_time_train_mode,
    to01,
    translate_card,
)


def _unet(**kw: Any) -> ArchSpec:
    return ArchSpec({"arch": "UNetGenerator", "num_downs": 8, "ngf": 64, "norm": "batch", "use_dropout": True, **kw})


def _patch(**kw: Any) -> ArchSpec:
    return ArchSpec({"arch": "PatchDiscriminator", "in_ch": 6, "ndf": 64, "n_layers": 3, "norm": "batch", **kw})


@dataclass
class Pix2PixModel:
    G: ArchSpec = field(default_factory=_unet)  # unet_256; ResnetGenerator works too
    D: ArchSpec | None = field(default_factory=_patch)  # 70x70 PatchGAN on (input, output); null = L1 only
    init: InitConfig = field(default_factory=InitConfig)


@dataclass
class Pix2PixLoss:
    gan: float = num(1.0, ge=0.0)  # cGAN weight for G (0 with model.D null: the L1-only baseline)
    gan_kind: Literal["vanilla", "lsgan"] = "vanilla"
    l1: float = num(100.0, ge=0.0)  # lambda
    diffaugment: list[Policy] = field(default_factory=list)  # D inputs: color, translation, cutout


@dataclass
class Pix2PixOptim:
    lr_G: float = num(2e-4, gt=0.0)
    lr_D: float = num(2e-4, gt=0.0)
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass
class Pix2PixVal(TranslateVal):
    root: str | None = None  # held-out pairs in data's layout (e.g. facades/val); null = none


@dataclass
class Pix2PixConfig:
    data: PairedDataConfig
    model: Pix2PixModel = field(default_factory=Pix2PixModel)
    loss: Pix2PixLoss = field(default_factory=Pix2PixLoss)
    optim: Pix2PixOptim = field(default_factory=Pix2PixOptim)
    val: Pix2PixVal = field(default_factory=Pix2PixVal)
    domains: Domains = field(default_factory=Domains)


class Pix2PixRecipe(Recipe):
    name = "pix2pix"
    Config = Pix2PixConfig
    finetune_config = "pix2pix/facades"

    @classmethod
    def finetune(cls, raw: dict[str, Any], card: Any, weights: str, data: Any, options: dict[str, Any]) -> None:
        from img2img.recipes.finetune import generator_spec, paired_data

        raw.setdefault("model", {})["G"] = generator_spec(card)
        section = raw.setdefault("data", {})
        section.update(paired_data(data))
        maps = card.extra.get("maps")
        if maps in ("AtoB", "BtoA"):  # the way the weights were trained (facades: labels B -> photo A)
            section["direction"] = maps
        raw.setdefault("train", {})["init_from"] = {"G": weights}
        raw.pop("val", None)

    def __init__(self, cfg: Pix2PixConfig, *, seed: int = 0) -> None:
        super().__init__(cfg, seed=seed)
        self.check_config(cfg)
        self.gan_loss = None

    @classmethod
    def check_config(cls, cfg: Pix2PixConfig) -> None:
        g, d, data, loss = arch_kwargs(cfg.model.G), cfg.model.D, cfg.data, cfg.loss
        if g.get("in_ch", 3) != data.in_channels or g.get("out_ch", 3) != data.out_channels:
            raise ConfigError(
                f"model.G maps {g.get('in_ch', 3)} -> {g.get('out_ch', 3)} channels but data gives "
                f"{data.in_channels} -> {data.out_channels}; make model.G.in_ch / out_ch match the data"
            )
        if d is None and loss.gan > 0:
            raise ConfigError("loss.gan > 0 needs a discriminator: set model.D (PatchDiscriminator) or loss.gan=0")
        if d is not None and loss.gan == 0:
            raise ConfigError("model.D is set but loss.gan is 0: set loss.gan (pix2pix: 1) or model.D=null")
        if d is None and loss.diffaugment:
            raise ConfigError("loss.diffaugment augments what the discriminator sees: it needs model.D")
        if "color" in loss.diffaugment and (data.in_channels, data.out_channels) != (3, 3):
            raise ConfigError("loss.diffaugment 'color' needs RGB inputs and outputs; use translation / cutout only")
        if d is not None and arch_kwargs(d).get("in_ch") != data.in_channels + data.out_channels:
            raise ConfigError(
                f"model.D.in_ch must be data.in_channels + data.out_channels = {data.in_channels + data.out_channels}: "
                "the conditional discriminator sees the input and the output together"
            )
        if loss.l1 + loss.gan == 0:
            raise ConfigError("loss: every weight is 0; set loss.l1 (pix2pix: 100)")
        crop_modes = ("resize_and_crop", "crop", "scale_width_and_crop")
        with torch.device("meta"):
            m = size_multiple(cfg.model.G.build())
        if data.preprocess in crop_modes and data.crop_size % m:
            raise ConfigError(f"data.crop_size ({data.crop_size}) must be a multiple of {m} for model.G")

    def build_networks(self) -> Nets:
        nets = {"G": build(self.cfg.model.G, self.cfg.model.init)}
        if self.cfg.model.D is not None:
            nets["D"] = build(self.cfg.model.D, self.cfg.model.init)
        return nets

    def phases(self) -> list[Phase]:
        o = self.cfg.optim
        out = [Phase("G", ["G"], lr=o.lr_G, betas=o.betas)]
        if self.cfg.model.D is not None:
            out.append(Phase("D", ["D"], lr=o.lr_D, betas=o.betas))
        return out

    def aux_modules(self) -> dict[str, torch.nn.Module]:
        from img2img.losses import GANLoss

        if self.cfg.model.D is None:
            return {}
        self.gan_loss = GANLoss(self.cfg.loss.gan_kind)
        self.build_diffaug(self.cfg.loss.diffaugment, (-1.0, 1.0))
        return {"gan": self.gan_loss}

    def make_dataset(self) -> torch.utils.data.Dataset:
        from img2img.data.paired import PairedDataset

        return PairedDataset(self.cfg.data, seed=self.seed)

    def losses(self, phase: str, batch: Batch, nets: Nets, scratch: dict[str, Any]) -> dict[str, torch.Tensor]:
        loss, a, b = self.cfg.loss, batch["A"], batch["B"]
        if phase == "G":
            fake = scratch["fake"] = nets["G"](a)
            terms = {}
            if loss.gan > 0:
                terms["gan"] = loss.gan * self.gan_loss.g_loss(nets["D"](self.d_input(torch.cat([a, fake], 1))))
            if loss.l1 > 0:
                terms["l1"] = loss.l1 * F.l1_loss(fake.float(), b.float())
            return terms
        if phase == "D":
            fake = scratch["fake"].detach() if "fake" in scratch else nets["G"](a).detach()
            real, fake = self.d_input(torch.cat([a, b], 1)), self.d_input(torch.cat([a, fake], 1))
            real_logits, fake_logits = nets["D"](real), nets["D"](fake)
            return {"gan": 0.5 * self.gan_loss.d_loss(real_logits, fake_logits)}  # halved: D learns slower than G
        raise KeyError(f"pix2pix has no phase {phase!r}")

    @torch.no_grad()
    def sample_images(self, batch: Batch, nets: Nets) -> list[ImageRow]:
        a, b = batch["A"][:4], batch["B"][:4]
        fake = to01(nets["G"](a))
        return [[to01(a[i : i + 1])[0], fake[i], to01(b[i : i + 1])[0]] for i in range(len(a))]

    def _val_config(self) -> PairedDataConfig:
        from dataclasses import replace

        size = self.cfg.val.size or self.cfg.data.crop_size
        return replace(
            self.cfg.data, root=self.cfg.val.root, preprocess="resize_and_crop", load_size=size, crop_size=size,
            flip=False, max_dataset_size=self.cfg.val.max_images, dir_A=None, dir_B=None,
        )  # fmt: skip

    @torch.no_grad()
    def validate(self, nets: Nets, device: torch.device) -> dict[str, float]:
        """L1, PSNR and SSIM (RGB) of G's outputs against the held-out targets."""
        if not self.cfg.val.root:
            return {}
        from img2img.data.paired import PairedDataset

        g = test_time_train_mode(nets["G"]) if self.cfg.val.train_mode else nets["G"]
        data = PairedDataset(self._val_config(), seed=0)
        rows = []
        for i in range(len(data)):
            s = data[i]
            if s is None:
                continue
            out = run_padded(g, s["A"][None].to(device))[0].float().cpu()
            rows.append(image_metrics(out, s["B"]))
        return {**mean_metrics(rows), "val_images": float(len(rows))} if rows else {}

    def export_card(self, net: str) -> dict[str, Any] | None:
        if net != "G":
            return None
        c, size = self.cfg, self.cfg.val.size or self.cfg.data.crop_size
        protocol = (
            f"{c.val.root}: first {c.val.max_images} pairs ({c.data.direction}) resized to {size}x{size}; "
            "G in "
            + ("train mode (dropout, batch statistics)" if c.val.train_mode else "eval mode")
            + "; outputs and targets quantised to 8 bits; L1 = mean |out - target| on [0, 1]; PSNR and SSIM on RGB"
        )
        card = translate_card(
            c.model.G, "G", family="pix2pix", maps=c.data.direction, domains=(c.domains.A, c.domains.B),
            protocol=protocol,
        )  # fmt: skip
        card["training"] = {"losses": {"gan": c.loss.gan, "gan_kind": c.loss.gan_kind, "l1": c.loss.l1},
                            "baseline": c.model.D is None}  # fmt: skip
        return card

    def data_description(self) -> dict[str, Any]:
        d = self.cfg.data
        return {"layout": d.layout, "root": d.root, "direction": d.direction, "preprocess": d.preprocess,
                "load_size": d.load_size, "crop_size": d.crop_size, "flip": d.flip}  # fmt: skip
