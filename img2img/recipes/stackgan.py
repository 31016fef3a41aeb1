"""StackGAN (Zhang et al. 2017): text -> 64x64 (Stage I) -> 256x256 (Stage II), trained one stage at a
time as in the paper, conditioned on our own frozen text encoder (recipe `text_encoder`).

Stage 1 (`stage: 1`, `text_encoder:` its exported weights or run folder): conditioning augmentation +
Stage-I generator G1 and its matching-aware discriminator D1. Stage 2 (`stage: 2`, `stage1:` a stage-1
export or run folder): the Stage-II generator G2 on top of the frozen G1 (its submodule `STAGE1_G`) and
D2, which has conditional and unconditional logits (the released code).

Losses, as released (BCE with logits; D conditioned on the generator's CA mean, detached):
D: real image + its caption -> real; generated + caption -> fake; real image + a *mismatched* caption
(of other content: another shapes combination, another CUB class, another image) -> fake;
stage 1: D = real + (fake + wrong) / 2; stage 2: D = (real + real_uncond) / 2 + (fake + wrong +
fake_uncond) / 3. G: fake -> real (+ unconditional in stage 2) + 2.0 * KL(N(mu, sigma) || N(0, I))."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from img2img.archs import build_arch
from img2img.config import ArchSpec, arch_kwargs, num
from img2img.data.captions import CaptionDataConfig, CaptionDataset
from img2img.errors import ConfigError
from img2img.recipes.base import Batch, ImageRow, Nets, Phase, Recipe, upsample_to
from img2img.recipes.translation import InitConfig, to01
from img2img.text import Tokenizer


def _g1() -> ArchSpec:
    return ArchSpec({"arch": "StageIGenerator", "c_dim": 128, "z_dim": 100, "gf": 128, "image_size": 64})


def _d1() -> ArchSpec:
    return ArchSpec({"arch": "StageIDiscriminator", "df": 64, "c_dim": 128, "image_size": 64})


def _g2() -> ArchSpec:
    return ArchSpec({"arch": "StageIIGenerator", "gf": 128, "r_num": 4, "up_factor": 4})


def _d2() -> ArchSpec:
    return ArchSpec({"arch": "StageIIDiscriminator", "df": 64, "c_dim": 128, "image_size": 256})


@dataclass
class StackGANModel:
    G1: ArchSpec = field(default_factory=_g1)  # stage 1 (t_dim comes from the text encoder)
    D1: ArchSpec = field(default_factory=_d1)
    G2: ArchSpec = field(default_factory=_g2)  # stage 2 (stage1 comes from `stage1:`)
    D2: ArchSpec = field(default_factory=_d2)
    init: InitConfig = field(default_factory=InitConfig)


@dataclass
class StackGANLoss:
    kl: float = num(2.0, ge=0.0)  # the paper's lambda for the CA regulariser
    kl_reduction: Literal["mean", "batchmean"] = "mean"  # mean: as released (per dimension)


@dataclass
class StackGANOptim:
    lr_G: float = num(2e-4, gt=0.0)
    lr_D: float = num(2e-4, gt=0.0)
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass
class StackGANConfig:
    data: CaptionDataConfig
    stage: Literal[1, 2] = 1
    text_encoder: str | None = None  # stage 1: text encoder export (.safetensors) or its run folder
    stage1: str | None = None  # stage 2: stage-1 export (.safetensors) or its run folder
    model: StackGANModel = field(default_factory=StackGANModel)
    loss: StackGANLoss = field(default_factory=StackGANLoss)
    optim: StackGANOptim = field(default_factory=StackGANOptim)
    prompts: list[str] = field(default_factory=list)  # sample grids: fixed prompts (default: batch captions)


def read_source(path: str, key: str) -> tuple[Path, dict[str, Any]]:
    """(weights file, card dict) of an export (.safetensors / .json) or a finished run folder (its
    `weights/` export). ConfigError naming `key` when there is none."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted((p / "weights").glob("*.safetensors"))
        named = [f for f in found if f.stem == p.name]
        if not (named or len(found) == 1):
            raise ConfigError(
                f"{key}: {p} holds no single exported weights file in {p / 'weights'} (found {len(found)}); finish "
                "the run or export it (`img2img export RUN --name NAME`) and point to the .safetensors"
            )
        p = (named or found)[0]
    weights = p.with_suffix(".safetensors")
    card = p.with_suffix(".json")
    if not weights.is_file() or not card.is_file():
        raise ConfigError(f"{key}: {weights} with its card {card.name} not found")
    try:
        return weights, json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key}: cannot read the card {card} ({e})") from e


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


class StackGANRecipe(Recipe):
    name = "stackgan"
    Config = StackGANConfig

    def __init__(self, cfg: StackGANConfig, *, seed: int = 0) -> None:
        super().__init__(cfg, seed=seed)
        self.check_config(cfg)
        self.info: dict[str, Any] = {}  # tokenizer, T's and G1's arch kwargs: read from the sources, kept in state

    @classmethod
    def check_config(cls, cfg: StackGANConfig) -> None:
        m = cfg.model
        for key, arch in (("G1", "StageIGenerator"), ("D1", "StageIDiscriminator"), ("G2", "StageIIGenerator"),
                          ("D2", "StageIIDiscriminator")):  # fmt: skip
            if getattr(m, key).arch != arch:
                raise ConfigError(f"model.{key} must be a {arch}, not {getattr(m, key).arch}")
        if "stage1" in m.G2.kwargs:
            raise ConfigError("model.G2.stage1 comes from the stage-1 weights (`stage1:`); leave it out")
        if cfg.stage == 1:
            if not cfg.text_encoder:
                raise ConfigError("text_encoder: stage 1 needs the trained text encoder (its export or run folder)")
            g, d = {**arch_kwargs(m.G1), **m.G1.kwargs}, {**arch_kwargs(m.D1), **m.D1.kwargs}
            if g["c_dim"] != d["c_dim"] or g["image_size"] != d["image_size"]:
                raise ConfigError(
                    f"model.D1 must match model.G1: c_dim {d['c_dim']} vs {g['c_dim']}, image_size "
                    f"{d['image_size']} vs {g['image_size']}"
                )
            if cfg.data.size and cfg.data.size != g["image_size"]:
                raise ConfigError(f"data.size ({cfg.data.size}) must be model.G1.image_size ({g['image_size']}) or 0")
        elif not cfg.stage1:
            raise ConfigError("stage1: stage 2 needs the trained stage-1 model (its export or run folder)")

    # ------------------------------------------------------------------ sources

    def _sources(self) -> dict[str, Any]:
        """Tokenizer and frozen networks' kwargs from `text_encoder:` (stage 1) or `stage1:` (stage 2)."""
        if self.info:
            return self.info
        c = self.cfg
        key, path = ("text_encoder", c.text_encoder) if c.stage == 1 else ("stage1", c.stage1)
        weights, card = read_source(str(path), key)
        tok = (card.get("inputs") or {}).get("tokenizer")
        if not tok:
            raise ConfigError(f"{key}: {weights} has no tokenizer in its card; it is not one of our text models")
        if card.get("arch") == "SentenceEncoder":
            t = {"arch": "SentenceEncoder", "arch_kwargs": card["arch_kwargs"]}
            g1 = None
        elif "T" in card.get("networks", {}):
            t = {k: card["networks"]["T"][k] for k in ("arch", "arch_kwargs")}
            g1 = card["arch_kwargs"] if card.get("arch") == "StageIGenerator" else None
            if g1 is None and card.get("arch") == "StageIIGenerator":
                g1 = card["arch_kwargs"].get("stage1")
        else:
            raise ConfigError(f"{key}: {weights} is neither a text encoder nor a stackgan model with one")
        if c.stage == 2 and g1 is None:
            raise ConfigError(f"stage1: {weights} holds no Stage-I generator")
        self.info = {"weights": str(weights), "tokenizer": tok, "T": t, "G1": g1}
        return self.info

    def init_sources(self) -> dict[str, str]:
        src = self._sources()["weights"]
        return {"T": src} if self.cfg.stage == 1 else {"T": src, "G1": src}

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_dict(self._sources()["tokenizer"])

    def t_dim(self) -> int:
        return int(self._sources()["T"]["arch_kwargs"].get("out_dim", 1024))

    def g1_kwargs(self) -> dict[str, Any]:
        if self.cfg.stage == 2:
            return dict(self._sources()["G1"])
        user = self.cfg.model.G1.kwargs
        if user.get("t_dim", self.t_dim()) != self.t_dim():
            raise ConfigError(f"model.G1.t_dim ({user['t_dim']}) must be the text encoder's out_dim ({self.t_dim()})")
        g = {**arch_kwargs(self.cfg.model.G1), "t_dim": self.t_dim()}
        return g

    def g2_kwargs(self) -> dict[str, Any]:
        return {**arch_kwargs(self.cfg.model.G2), "stage1": self.g1_kwargs()}

    def image_size(self) -> int:
        g1 = self.g1_kwargs()
        return int(g1["image_size"]) * (int(self.g2_kwargs()["up_factor"]) if self.cfg.stage == 2 else 1)

    # ------------------------------------------------------------------ networks

    def build_networks(self) -> Nets:
        from img2img.layers import init_weights

        m, info = self.cfg.model, self._sources()
        t = build_arch(info["T"]["arch"], **info["T"]["arch_kwargs"]).eval().requires_grad_(False)
        g1 = build_arch("StageIGenerator", **self.g1_kwargs())
        if self.cfg.stage == 1:
            d1 = arch_kwargs(m.D1)
            return {"T": t, "G1": init_weights(g1, m.init.kind, m.init.gain),
                    "D1": init_weights(build_arch("StageIDiscriminator", **d1), m.init.kind, m.init.gain)}  # fmt: skip
        g1.eval().requires_grad_(False)
        kw = {k: v for k, v in self.g2_kwargs().items() if k != "stage1"}
        g2 = build_arch("StageIIGenerator", stage1=g1, **kw)
        for name, child in g2.named_children():  # the Stage-II part only; STAGE1_G comes from `stage1:`
            if name != "STAGE1_G":
                init_weights(child, m.init.kind, m.init.gain)
        d2 = arch_kwargs(m.D2)
        if d2["image_size"] != g2.image_size or d2["c_dim"] != g2.c_dim:
            raise ConfigError(
                f"model.D2 must match the Stage-II generator: image_size {d2['image_size']} vs {g2.image_size}, "
                f"c_dim {d2['c_dim']} vs {g2.c_dim}"
            )
        d2n = init_weights(build_arch("StageIIDiscriminator", **d2), m.init.kind, m.init.gain)
        # G1 is G2's STAGE1_G (one module): loaded from `stage1:`, frozen, checkpointed with the run.
        return {"T": t, "G1": g1, "G2": g2, "D2": d2n}

    def phases(self) -> list[Phase]:
        o, s = self.cfg.optim, self.cfg.stage
        return [Phase("G", [f"G{s}"], lr=o.lr_G, betas=o.betas), Phase("D", [f"D{s}"], lr=o.lr_D, betas=o.betas)]

    def make_dataset(self) -> CaptionDataset:
        size = self.image_size()
        if self.cfg.data.size and self.cfg.data.size != size:
            raise ConfigError(f"data.size ({self.cfg.data.size}) must be stage {self.cfg.stage}'s image size ({size}) "
                              "or 0")  # fmt: skip
        return CaptionDataset(self.cfg.data, self.tokenizer, size, seed=self.seed)

    # ------------------------------------------------------------------ losses

    @staticmethod
    def embed(nets: Nets, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return nets["T"](ids, lengths).float()

    def _generate(self, nets: Nets, emb: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(fake at this stage, mu, logvar, stage-1 image or None)."""
        if self.cfg.stage == 1:
            fake, mu, logvar = nets["G1"](emb, noise)
            return fake, mu, logvar, None
        low, fake, mu, logvar = nets["G2"](emb, noise)
        return fake, mu, logvar, low

    def _ca(self, nets: Nets) -> torch.nn.Module:
        return nets["G1"].ca_net if self.cfg.stage == 1 else nets["G2"].ca_net

    def losses(self, phase: str, batch: Batch, nets: Nets, scratch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from img2img.archs.stackgan import kl_loss

        s, c = self.cfg.stage, self.cfg
        d = nets[f"D{s}"]
        if "emb" not in scratch:
            scratch["emb"] = self.embed(nets, batch["ids"], batch["length"])
        emb = scratch["emb"]
        if phase == "G":
            noise = torch.randn(len(emb), self.g1_kwargs()["z_dim"], device=emb.device)
            fake, mu, logvar, _ = self._generate(nets, emb, noise)
            scratch["fake"], scratch["mu"] = fake, mu
            feats = d(fake)
            terms = {"gan": _bce(d.get_cond_logits(feats, mu.detach()), True)}
            if d.get_uncond_logits is not None:
                terms["gan_uncond"] = _bce(d.get_uncond_logits(feats), True)
            if c.loss.kl > 0:
                terms["kl"] = c.loss.kl * kl_loss(mu.float(), logvar.float(), c.loss.kl_reduction)
            return terms
        if phase == "D":
            if "fake" in scratch:
                fake, mu = scratch["fake"].detach(), scratch["mu"].detach()
            else:
                with torch.no_grad():
                    noise = torch.randn(len(emb), self.g1_kwargs()["z_dim"], device=emb.device)
                    fake, mu, _, _ = self._generate(nets, emb, noise)
            with torch.no_grad():
                wrong_mu, _ = self._ca(nets).encode(self.embed(nets, batch["wrong_ids"], batch["wrong_length"]))
            real_feats, fake_feats = d(batch["image"]), d(fake)
            real = _bce(d.get_cond_logits(real_feats, mu), True)
            wrong = _bce(d.get_cond_logits(real_feats, wrong_mu), False)  # real image, mismatched text
            fake_ = _bce(d.get_cond_logits(fake_feats, mu), False)
            if d.get_uncond_logits is None:
                return {"real": real, "fake": 0.5 * fake_, "wrong": 0.5 * wrong}
            real_u, fake_u = _bce(d.get_uncond_logits(real_feats), True), _bce(d.get_uncond_logits(fake_feats), False)
            return {"real": 0.5 * real, "real_uncond": 0.5 * real_u, "fake": fake_ / 3, "wrong": wrong / 3,
                    "fake_uncond": fake_u / 3}  # fmt: skip
        raise KeyError(f"stackgan has no phase {phase!r}")

    # ------------------------------------------------------------------ samples

    @torch.no_grad()
    def sample_images(self, batch: Batch, nets: Nets) -> list[ImageRow]:
        """Per row: the real image, then 3 samples for its caption (or a fixed prompt); stage 2 shows
        each Stage-I image (upsampled) beside its Stage-II image."""
        n = min(4, len(batch["image"]))
        if self.cfg.prompts:
            enc = self.tokenizer.encode_batch(self.cfg.prompts[:n])
            emb = self.embed(nets, enc.ids.to(batch["ids"].device), enc.lengths.to(batch["ids"].device))
            n = len(emb)
        else:
            emb = self.embed(nets, batch["ids"][:n], batch["length"][:n])
        g = torch.Generator().manual_seed(0)
        rows = []
        for i in range(n):
            noise = torch.randn(3, self.g1_kwargs()["z_dim"], generator=g).to(emb.device)
            fake, _, _, low = self._generate(nets, emb[i : i + 1].expand(3, -1), noise)
            real = to01(batch["image"][i : i + 1])[0]
            row = [real]
            for k in range(3):
                if low is not None:
                    row.append(upsample_to(to01(low[k : k + 1])[0], tuple(fake.shape[-2:])))
                row.append(to01(fake[k : k + 1])[0])
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ state and export

    def state_dict(self) -> dict[str, Any]:
        return {"sources": self._sources()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("sources"):
            self.info = dict(state["sources"])

    def export_card(self, net: str) -> dict[str, Any] | None:
        s = self.cfg.stage
        if net != f"G{s}":
            return None
        info, size = self._sources(), self.image_size()
        g1 = self.g1_kwargs()
        stages = [{"stage": 1, "module": "" if s == 1 else "STAGE1_G", "output": 0, "size": int(g1["image_size"])}]
        if s == 2:
            stages.append({"stage": 2, "module": "", "output": 1, "size": size})
        arch = "StageIGenerator" if s == 1 else "StageIIGenerator"
        return {
            "arch": arch, "arch_kwargs": g1 if s == 1 else self.g2_kwargs(), "task": "generate",
            "value_range": (-1.0, 1.0), "size_multiple": 1, "receptive_radius": 0,
            "description": f"StackGAN stage {s} ({size}x{size}) with its text encoder T",
            "inputs": {"tokenizer": info["tokenizer"], "embedding_dim": self.t_dim(), "noise_dim": int(g1["z_dim"]),
                       "stages": stages},
            "output": {"size": "fixed", "height": size, "width": size},
            "networks": {"T": {**info["T"], "from": "T"}},
            "extra": {"family": "stackgan", "stage": s, "prompts": list(self.cfg.prompts)},
            "training": {"losses": {"kl": self.cfg.loss.kl, "kl_reduction": self.cfg.loss.kl_reduction,
                                    "d": "real + (fake + wrong) / 2" if s == 1 else
                                    "(real + real_uncond) / 2 + (fake + wrong + fake_uncond) / 3"}},
        }  # fmt: skip

    def data_description(self) -> dict[str, Any]:
        d = self.cfg.data
        return {"layout": d.layout, "root": d.root, "split": d.split, "load_size": d.load_size, "flip": d.flip}
