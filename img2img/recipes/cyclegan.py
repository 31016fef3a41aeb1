"""CycleGAN (Zhu et al. 2017): generators G_AB: A -> B and G_BA: B -> A, discriminators D_A (judges
domain A images) and D_B (domain B). LSGAN adversarial losses, cycle consistency (eq. 2, lambda 10
each way), identity loss 0.5 * lambda (Sec. 5.2), and a history pool of 50 generated images per
domain that the discriminators see instead of only the newest fakes (Sec. 4, after Shrivastava et al.)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from img2img.config import ArchSpec, arch_kwargs, num
from img2img.data.unpaired import UnpairedDataConfig
from img2img.errors import ConfigError
from img2img.recipes.base import Batch, ImageRow, Nets, Phase, Recipe
from img2img.recipes.diffaug import Policy
from img2img.recipes.translation import (
    Domains,
    InitConfig,
    TranslateVal,
    build,
    mean_metrics,
    run_padded,
    to01,
    translate_card,
    val_images,
)


def _resnet(**kw: Any) -> ArchSpec:
    return ArchSpec({"arch": "ResnetGenerator", "ngf": 64, "n_blocks": 9, "norm": "instance", **kw})


def _patch(**kw: Any) -> ArchSpec:
    return ArchSpec({"arch": "PatchDiscriminator", "in_ch": 3, "ndf": 64, "n_layers": 3, "norm": "instance", **kw})


@dataclass
class CycleGANModel:
    G: ArchSpec = field(default_factory=_resnet)  # both generators (resnet_9blocks)
    D: ArchSpec = field(default_factory=_patch)  # both discriminators (70x70 PatchGAN)
    init: InitConfig = field(default_factory=InitConfig)


@dataclass
class CycleGANLoss:
    gan_kind: Literal["lsgan", "vanilla"] = "lsgan"
    gan: float = num(1.0, gt=0.0)
    cycle_A: float = num(10.0, ge=0.0)  # lambda_A: |G_BA(G_AB(a)) - a|
    cycle_B: float = num(10.0, ge=0.0)  # lambda_B: |G_AB(G_BA(b)) - b|
    identity: float = num(0.5, ge=0.0)  # times lambda: |G_AB(b) - b|, |G_BA(a) - a|; 0 = off
    diffaugment: list[Policy] = field(default_factory=list)  # D inputs: color, translation, cutout


@dataclass
class CycleGANOptim:
    lr_G: float = num(2e-4, gt=0.0)
    lr_D: float = num(2e-4, gt=0.0)
    betas: tuple[float, float] = (0.5, 0.999)
    pool_size: int = num(50, ge=0)  # generated images kept per domain for D; 0 = newest only


@dataclass
class CycleGANVal(TranslateVal):
    dir_A: str | None = None  # held-out domain A images (e.g. horse2zebra/testA); null = none
    dir_B: str | None = None  # held-out domain B images


@dataclass
class CycleGANConfig:
    data: UnpairedDataConfig
    model: CycleGANModel = field(default_factory=CycleGANModel)
    loss: CycleGANLoss = field(default_factory=CycleGANLoss)
    optim: CycleGANOptim = field(default_factory=CycleGANOptim)
    val: CycleGANVal = field(default_factory=CycleGANVal)
    domains: Domains = field(default_factory=Domains)


class ImagePool:
    """History of generated images (Shrivastava et al. 2017): until full, every new image is stored
    and returned; then each new image is, with probability 1/2, swapped for a random stored one
    (which D sees instead) or passed through. Its own generator keeps runs reproducible."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            if len(self.images) < self.size:
                self.images.append(img.float().clone())
                out.append(img)
            elif float(torch.rand((), generator=self.gen)) < 0.5:
                i = int(torch.randint(len(self.images), (), generator=self.gen))
                out.append(self.images[i].clone())
                self.images[i] = img.float().clone()
            else:
                out.append(img)
        return torch.stack([t.to(batch.dtype) for t in out])

    def state_dict(self) -> dict[str, Any]:
        return {"images": [t.cpu() for t in self.images], "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        self.images = [t.to(device) if device is not None else t for t in state.get("images", [])][: self.size]
        if "gen" in state:
            self.gen.set_state(state["gen"])


class CycleGANRecipe(Recipe):
    name = "cyclegan"
    Config = CycleGANConfig
    finetune_config = "cyclegan/horse2zebra"

    @classmethod
    def finetune(cls, raw: dict[str, Any], card: Any, weights: str, data: Any, options: dict[str, Any]) -> None:
        from pathlib import Path

        from img2img.recipes.finetune import generator_spec, unpaired_data

        path = Path(options.get("path") or weights)  # a catalog name resolved to its file
        partner = options.get("partner")  # the other generator of the pair, found beside it
        if partner is None or not Path(partner).is_file():
            raise ConfigError(
                f"{path.name}: fine-tuning a CycleGAN needs both generators; its partner "
                f"({Path(partner).name if partner else 'NAME_G_BA for NAME_G_AB'}) is not beside it"
            )
        forward = options.get("maps") != "BtoA"
        g_ab, g_ba = (path, partner) if forward else (partner, path)
        raw.setdefault("model", {})["G"] = generator_spec(card)
        raw.setdefault("data", {}).update(unpaired_data(data))
        raw.setdefault("train", {})["init_from"] = {"G_AB": str(g_ab), "G_BA": str(g_ba)}
        raw.pop("val", None)

    def __init__(self, cfg: CycleGANConfig, *, seed: int = 0) -> None:
        super().__init__(cfg, seed=seed)
        self.check_config(cfg)
        self.gan_loss = None
        # One pool per domain. Each process keeps its own; checkpoints hold the main process's.
        self.pools = {d: ImagePool(cfg.optim.pool_size, seed * 2 + i) for i, d in enumerate("AB")}

    @classmethod
    def check_config(cls, cfg: CycleGANConfig) -> None:
        g, d, data = arch_kwargs(cfg.model.G), arch_kwargs(cfg.model.D), cfg.data
        if data.in_channels != data.out_channels or g.get("in_ch", 3) != g.get("out_ch", 3):
            raise ConfigError(
                "CycleGAN's two generators share one architecture: data.in_channels, data.out_channels, "
                "model.G.in_ch and model.G.out_ch must be equal"
            )
        if g.get("in_ch", 3) != data.in_channels or d.get("in_ch", 3) != data.in_channels:
            raise ConfigError(
                f"model.G.in_ch ({g.get('in_ch', 3)}) and model.D.in_ch ({d.get('in_ch', 3)}) must equal "
                f"data.in_channels ({data.in_channels})"
            )
        if "color" in cfg.loss.diffaugment and data.in_channels != 3:
            raise ConfigError("loss.diffaugment 'color' needs RGB domains; use translation / cutout only")
        if cfg.loss.identity > 0 and cfg.loss.cycle_A + cfg.loss.cycle_B == 0:
            raise ConfigError("loss.identity is a multiple of the cycle weights; with both 0 set loss.identity=0")

    def build_networks(self) -> Nets:
        m = self.cfg.model
        return {
            "G_AB": build(m.G, m.init),
            "G_BA": build(m.G, m.init),
            "D_A": build(m.D, m.init),
            "D_B": build(m.D, m.init),
        }

    def phases(self) -> list[Phase]:
        o = self.cfg.optim
        return [
            Phase("G", ["G_AB", "G_BA"], lr=o.lr_G, betas=o.betas),
            Phase("D", ["D_A", "D_B"], lr=o.lr_D, betas=o.betas),
        ]

    def aux_modules(self) -> dict[str, torch.nn.Module]:
        from img2img.losses import GANLoss

        self.gan_loss = GANLoss(self.cfg.loss.gan_kind)
        self.build_diffaug(self.cfg.loss.diffaugment, (-1.0, 1.0))
        return {"gan": self.gan_loss}

    def make_dataset(self) -> torch.utils.data.Dataset:
        from img2img.data.unpaired import UnpairedDataset

        return UnpairedDataset(self.cfg.data, seed=self.seed)

    def losses(self, phase: str, batch: Batch, nets: Nets, scratch: dict[str, Any]) -> dict[str, torch.Tensor]:
        loss, a, b = self.cfg.loss, batch["A"], batch["B"]
        if phase == "G":
            fake_b, fake_a = nets["G_AB"](a), nets["G_BA"](b)
            scratch["fake_A"], scratch["fake_B"] = fake_a, fake_b
            terms = {
                "gan_AB": loss.gan * self.gan_loss.g_loss(nets["D_B"](self.d_input(fake_b))),
                "gan_BA": loss.gan * self.gan_loss.g_loss(nets["D_A"](self.d_input(fake_a))),
            }
            if loss.cycle_A > 0:
                terms["cycle_A"] = loss.cycle_A * F.l1_loss(nets["G_BA"](fake_b).float(), a.float())
            if loss.cycle_B > 0:
                terms["cycle_B"] = loss.cycle_B * F.l1_loss(nets["G_AB"](fake_a).float(), b.float())
            if loss.identity > 0:  # a generator fed its own target domain should change nothing
                terms["idt_A"] = loss.identity * loss.cycle_A * F.l1_loss(nets["G_BA"](a).float(), a.float())
                terms["idt_B"] = loss.identity * loss.cycle_B * F.l1_loss(nets["G_AB"](b).float(), b.float())
            return terms
        if phase == "D":
            terms = {}
            for dom, real in (("A", a), ("B", b)):
                fake = scratch[f"fake_{dom}"] if f"fake_{dom}" in scratch else self._fake(dom, batch, nets)
                self._place_pool(dom, real.device)
                fake = self.pools[dom].query(fake.detach())
                d = nets[f"D_{dom}"]
                terms[f"gan_{dom}"] = 0.5 * self.gan_loss.d_loss(d(self.d_input(real)), d(self.d_input(fake)))
            return terms
        raise KeyError(f"cyclegan has no phase {phase!r}")

    @staticmethod
    def _fake(dom: str, batch: Batch, nets: Nets) -> torch.Tensor:
        return nets["G_BA"](batch["B"]) if dom == "A" else nets["G_AB"](batch["A"])

    def _place_pool(self, dom: str, device: torch.device) -> None:
        pool = self.pools[dom]
        if pool.images and pool.images[0].device != device:
            pool.images = [t.to(device) for t in pool.images]

    # ---- image pools travel with checkpoints, so a resumed run sees the same history
    def state_dict(self) -> dict[str, Any]:
        return {"pools": {d: p.state_dict() for d, p in self.pools.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for d, s in state.get("pools", {}).items():
            self.pools[d].load_state_dict(s)

    @torch.no_grad()
    def sample_images(self, batch: Batch, nets: Nets) -> list[ImageRow]:
        rows = []
        for real, fwd, back in ((batch["A"][:2], "G_AB", "G_BA"), (batch["B"][:2], "G_BA", "G_AB")):
            fake = nets[fwd](real)
            rec = nets[back](fake)
            rows += [[to01(real)[i], to01(fake)[i], to01(rec)[i]] for i in range(len(real))]
        return rows

    @torch.no_grad()
    def validate(self, nets: Nets, device: torch.device) -> dict[str, float]:
        """Cycle-reconstruction error on held-out images of each domain: mean |G_BA(G_AB(a)) - a|
        (and the same for b) on [0, 1], with PSNR of the reconstruction."""
        from img2img.eval.metrics import psnr

        v, out = self.cfg.val, {}
        size = v.size or self.cfg.data.crop_size
        for dom, folder, fwd, back in (("A", v.dir_A, "G_AB", "G_BA"), ("B", v.dir_B, "G_BA", "G_AB")):
            if not folder:
                continue
            rows = []
            for _, x in val_images(folder, size, v.max_images):
                rec = run_padded(nets[back], run_padded(nets[fwd], x[None].to(device))).float().cpu()
                r, t = to01(rec)[0].permute(1, 2, 0).numpy(), to01(x[None])[0].permute(1, 2, 0).numpy()
                rows.append({"cycle_l1": float(abs(r - t).mean()), "cycle_psnr": psnr(r, t, y_channel=False)})
            out.update(mean_metrics(rows, prefix=f"{dom}_"))
            out[f"{dom}_images"] = float(len(rows))
        return out

    def export_card(self, net: str) -> dict[str, Any] | None:
        if net not in ("G_AB", "G_BA"):
            return None
        c = self.cfg
        names = (c.domains.A, c.domains.B) if net == "G_AB" else (c.domains.B, c.domains.A)
        maps = c.data.direction if net == "G_AB" else {"AtoB": "BtoA", "BtoA": "AtoB"}[c.data.direction]
        size = c.val.size or c.data.crop_size
        protocol = (
            f"cycle reconstruction on the first {c.val.max_images} images of {c.val.dir_A} (A) and "
            f"{c.val.dir_B} (B), resized to {size}x{size}: mean |G_BA(G_AB(a)) - a| on [0, 1] and its PSNR (RGB)"
        )
        card = translate_card(c.model.G, net, family="cyclegan", maps=maps, domains=names,
                              protocol=protocol)  # fmt: skip
        card["training"] = {"losses": {"gan_kind": c.loss.gan_kind, "cycle_A": c.loss.cycle_A,
                                       "cycle_B": c.loss.cycle_B, "identity": c.loss.identity},
                            "pool_size": c.optim.pool_size}  # fmt: skip
        return card

    def data_description(self) -> dict[str, Any]:
        d = self.cfg.data
        a, b = d.folders()
        return {"dir_A": str(a), "dir_B": str(b), "preprocess": d.preprocess, "load_size": d.load_size,
                "crop_size": d.crop_size, "flip": d.flip}  # fmt: skip
