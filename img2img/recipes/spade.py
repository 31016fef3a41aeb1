"""SPADE / GauGAN (Park et al. 2019): a SPADE generator G on one-hot label maps (+ don't-care, + instance
edges), a multiscale PatchGAN D on (labels, image), hinge loss, D feature matching (lambda 10) and VGG19
perceptual loss (lambda 10, relu1_1..relu5_1 weighted 1/32 .. 1), and with the style encoder E a VAE
(KL, lambda 0.05). TTUR: G 1e-4, D 4e-4 (Sec. 4 and the released code)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from img2img.config import ArchSpec, arch_kwargs, num
from img2img.data.labels import LabelDataConfig
from img2img.errors import ConfigError
from img2img.io.labels import LabelSpec
from img2img.recipes.base import Batch, ImageRow, Nets, Phase, Recipe
from img2img.recipes.diffaug import Policy
from img2img.recipes.translation import Domains, InitConfig, build, image_metrics, mean_metrics, to01

VGG_LAYERS = {"relu1_1": 1 / 32, "relu2_1": 1 / 16, "relu3_1": 1 / 8, "relu4_1": 1 / 4, "relu5_1": 1.0}


def _g(**kw: Any) -> ArchSpec:
    return ArchSpec({"arch": "SPADEGenerator", "ngf": 64, "num_upsampling_layers": "normal", **kw})


def _d(**kw: Any) -> ArchSpec:
    return ArchSpec({"arch": "MultiscaleDiscriminator", "num_D": 2, "n_layers": 4, "ndf": 64, **kw})


@dataclass
class SPADEModel:
    # label_nc (= semantic_nc), crop_size, aspect_ratio and use_vae are filled from data and E when left out.
    G: ArchSpec = field(default_factory=_g)
    D: ArchSpec = field(default_factory=_d)  # input_nc filled (semantic_nc + 3)
    E: ArchSpec | None = None  # ConvEncoder: style encoder (VAE, z of G.z_dim); null = labels only
    init: InitConfig = field(default_factory=lambda: InitConfig("xavier", 0.02))  # the release's init


@dataclass
class SPADELoss:
    gan: float = num(1.0, gt=0.0)
    gan_kind: Literal["hinge", "vanilla", "lsgan"] = "hinge"
    fm: float = num(10.0, ge=0.0)  # feature matching on D's intermediate features (lambda_feat)
    fm_layers: Literal["sum", "mean"] = "sum"  # per D: sum over layers (released code) or their mean
    vgg: float = num(10.0, ge=0.0)  # VGG19 perceptual loss (lambda_vgg); 0 = off
    vgg_layers: dict[str, float] = field(default_factory=lambda: dict(VGG_LAYERS))
    vgg_weights: str | None = None  # ImageNet VGG19 .pth/.safetensors; null = torch hub cache
    allow_random_vgg: bool = False  # accept untrained VGG features (recorded in exported cards)
    kl: float = num(0.05, ge=0.0)  # KL of E's posterior to N(0, I) (lambda_kld; needs model.E)
    diffaugment: list[Policy] = field(default_factory=list)  # D inputs: translation, cutout (labels move along)


@dataclass
class SPADEOptim:
    lr_G: float = num(1e-4, gt=0.0)  # TTUR: lr / 2 and lr * 2 with the release's lr 2e-4
    lr_D: float = num(4e-4, gt=0.0)
    # The released code's TTUR betas; the paper (Sec. 4) states beta2 = 0.999, and the release without
    # TTUR uses (0.5, 0.999).
    betas: tuple[float, float] = (0.0, 0.9)


@dataclass
class SPADEVal:
    root: str | None = None  # held-out label/photo data in data's layout (e.g. facades/val); null = none
    size: int = num(0, ge=0)  # resize to size x size (0 = data.crop_size; fixed: data's size)
    max_images: int = num(100, gt=0)
    seed: int = 0  # style latent of the VAE generator for the main metrics


@dataclass
class SPADEConfig:
    data: LabelDataConfig
    model: SPADEModel = field(default_factory=SPADEModel)
    loss: SPADELoss = field(default_factory=SPADELoss)
    optim: SPADEOptim = field(default_factory=SPADEOptim)
    val: SPADEVal = field(default_factory=SPADEVal)
    domains: Domains = field(default_factory=lambda: Domains("label map", "photo"))


class SPADERecipe(Recipe):
    name = "spade"
    Config = SPADEConfig
    finetune_config = "spade/coco_stuff"

    @classmethod
    def finetune(cls, raw: dict[str, Any], card: Any, weights: str, data: Any, options: dict[str, Any]) -> None:
        from img2img.recipes.finetune import generator_spec, label_data

        model = raw.setdefault("model", {})
        model["G"] = generator_spec(card)
        model["E"] = generator_spec(_Spec(card.networks["E"])) if "E" in card.networks else None
        model["D"] = {**dict(model.get("D") or _d()), "input_nc": int(card.arch_kwargs["label_nc"]) + 3}
        section = raw.setdefault("data", {})
        section.update(label_data(data))
        if card.inputs:
            spec = LabelSpec.from_dict(card.inputs)
            section.update(
                {
                    "label_nc": spec.label_nc,
                    "dontcare": spec.dontcare,
                    "instance": spec.instance,
                    "palette": [list(c) for c in spec.palette] or None,
                    "classes": list(spec.classes),
                }
            )
        if section.get("instance") and section.get("layout") == "aligned":
            raise ConfigError(f"--data {data}: {card.name} takes instance maps; give labels/ + images/ + instances/")
        raw.setdefault("train", {})["init_from"] = {"G": weights, **({"E": weights} if model["E"] else {})}
        raw.pop("val", None)

    def __init__(self, cfg: SPADEConfig, *, seed: int = 0) -> None:
        super().__init__(cfg, seed=seed)
        self.check_config(cfg)
        self.label_nc: int | None = cfg.data.label_nc  # resolved by a scan when null (kept in checkpoints)
        self._items: list | None = None
        self._spec: LabelSpec | None = None
        self.vgg: nn.Module | None = None
        self.vgg_pretrained: bool | None = None
        self.gan_loss: nn.Module | None = None

    @classmethod
    def check_config(cls, cfg: SPADEConfig) -> None:
        g, e, loss, data = cfg.model.G, cfg.model.E, cfg.loss, cfg.data
        if g.arch != "SPADEGenerator" or cfg.model.D.arch != "MultiscaleDiscriminator":
            raise ConfigError("model.G must be a SPADEGenerator and model.D a MultiscaleDiscriminator")
        if e is not None and e.arch != "ConvEncoder":
            raise ConfigError("model.E must be a ConvEncoder (or null)")
        if "use_vae" in g and bool(g["use_vae"]) != (e is not None):
            raise ConfigError("model.G.use_vae must be true exactly when model.E (the style encoder) is set")
        if "color" in loss.diffaugment:
            raise ConfigError(
                "loss.diffaugment 'color' would change the colours D pairs with labels; use translation / cutout"
            )
        if e is not None and "z_dim" in e and int(e["z_dim"]) != int(arch_kwargs(g).get("z_dim", 256)):
            raise ConfigError(f"model.E.z_dim ({e['z_dim']}) must equal model.G.z_dim ({arch_kwargs(g)['z_dim']})")
        if data.label_nc is not None and "label_nc" in g and g["label_nc"] != data.spec(data.label_nc).semantic_nc:
            raise ConfigError(
                f"model.G.label_nc ({g['label_nc']}) must be the input channels data.label_nc (+1 with data.dontcare, "
                f"+1 with data.instance) = {data.spec(data.label_nc).semantic_nc}; or leave it out"
            )
        with torch.device("meta"):
            net = cls._complete(cfg, 3, g).build()
        h, w = data.output_hw()
        m = net.size_multiple
        if h % m or w % m:
            raise ConfigError(
                f"data crop ({w}x{h}) must be a multiple of {m} for model.G "
                f"(num_upsampling_layers {net.num_upsampling_layers})"
            )
        if arch_kwargs(g).get("param_free") == "instance" and h * w == m * m and net.output_size is None:
            raise ConfigError(
                f"model.G.param_free instance norm cannot normalise the 1x1 base grid of a {w}x{h} crop; use "
                f"a crop of at least {2 * m} px or param_free: batch"
            )
        if net.output_size is not None and net.output_size != (h, w):
            raise ConfigError(
                f"model.G with the VAE makes {net.output_size[1]}x{net.output_size[0]} images but the "
                f"data crop is {w}x{h}: set model.G.crop_size / aspect_ratio to match the data"
            )

    # ---- the label spec and the completed network specs
    @staticmethod
    def _complete(cfg: SPADEConfig, semantic_nc: int, spec: ArchSpec) -> ArchSpec:
        d = cfg.data
        if spec.arch == "SPADEGenerator":
            fill = {
                "label_nc": semantic_nc,
                "crop_size": d.crop_size,
                "aspect_ratio": d.aspect_ratio if d.preprocess == "fixed" else 1.0,
                "use_vae": cfg.model.E is not None,
            }
        elif spec.arch == "MultiscaleDiscriminator":
            fill = {"input_nc": semantic_nc + 3}
        else:
            fill = {"crop_size": d.crop_size, "z_dim": int(arch_kwargs(cfg.model.G).get("z_dim", 256))}
        return ArchSpec({**fill, **spec})

    @property
    def spec(self) -> LabelSpec:
        """What the generator takes: classes (scanned from the training labels when not configured)."""
        if self.label_nc is None:
            from img2img.data.labels import label_items, scan_label_nc

            self._items = label_items(self.cfg.data)
            self.label_nc, report = scan_label_nc(self.cfg.data, self._items)
            self.notes.append(report)
        if self._spec is None or self._spec.label_nc != self.label_nc:
            base = self.cfg.data.spec(self.label_nc)
            z = int(arch_kwargs(self.cfg.model.G).get("z_dim", 256)) if self.cfg.model.E is not None else 0
            self._spec = replace(base, z_dim=z, style=self.cfg.model.E is not None)
        return self._spec

    def arch(self, net: str) -> ArchSpec:
        spec = {"G": self.cfg.model.G, "D": self.cfg.model.D, "E": self.cfg.model.E}[net]
        return self._complete(self.cfg, self.spec.semantic_nc, spec)

    # ---- networks and phases
    def build_networks(self) -> Nets:
        init = self.cfg.model.init
        names = ["G", "D"] + (["E"] if self.cfg.model.E is not None else [])
        return {n: build(self.arch(n), init) for n in names}

    def phases(self) -> list[Phase]:
        o = self.cfg.optim
        g_nets = ["G", "E"] if self.cfg.model.E is not None else ["G"]
        return [Phase("G", g_nets, lr=o.lr_G, betas=o.betas), Phase("D", ["D"], lr=o.lr_D, betas=o.betas)]

    def aux_modules(self) -> dict[str, nn.Module]:
        from img2img.losses import GANLoss, PerceptualLoss

        loss = self.cfg.loss
        self.gan_loss = GANLoss(loss.gan_kind)
        self.build_diffaug(loss.diffaugment, (-1.0, 1.0))
        if loss.vgg > 0:
            # ImageNet-normalised inputs (the release feeds its [-1, 1] images to VGG unnormalised).
            try:
                self.vgg = PerceptualLoss(
                    loss.vgg_layers,
                    weights_path=loss.vgg_weights,
                    allow_random_init=loss.allow_random_vgg,
                    input_range=(-1.0, 1.0),
                )
            except ConfigError as e:
                raise ConfigError(f"loss.vgg_weights / loss.allow_random_vgg: {e}") from e
            self.vgg_pretrained = bool(self.vgg.pretrained)
            if not self.vgg_pretrained:
                self.notes.append(
                    "warning: loss.vgg uses untrained VGG19 features (loss.allow_random_vgg=true): they measure "
                    "structure only roughly, so results fall short of the paper's; give loss.vgg_weights for "
                    "ImageNet ones"
                )
        return {k: v for k, v in {"gan": self.gan_loss, "vgg": self.vgg}.items() if v is not None}

    def make_dataset(self) -> torch.utils.data.Dataset:
        from img2img.data.labels import LabelDataset

        spec = self.spec
        return LabelDataset(self.cfg.data, spec, seed=self.seed, items=self._items)

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label_nc": self.spec.label_nc}
        if self.vgg_pretrained is not None:
            out["vgg_pretrained"] = self.vgg_pretrained
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.label_nc = state.get("label_nc", self.label_nc)
        self.vgg_pretrained = state.get("vgg_pretrained", self.vgg_pretrained)

    # ---- losses
    def semantics(self, batch: Batch) -> torch.Tensor:
        """N x semantic_nc x H x W: one-hot classes, the don't-care channel, instance edges (the released input)."""
        spec, label = self.spec, batch["label"].long()
        index = label if spec.dontcare is None else torch.where(label == spec.dontcare, spec.label_nc, label)
        n_onehot = spec.label_nc + (spec.dontcare is not None)
        x = torch.zeros(label.shape[0], n_onehot, *label.shape[1:], device=label.device, dtype=batch["image"].dtype)
        x.scatter_(1, index[:, None], 1.0)
        if spec.instance:
            x = torch.cat([x, batch["instance"][:, None].to(x.dtype)], 1)
        return x

    def _d(self, nets: Nets, seg: torch.Tensor, image: torch.Tensor) -> list[list[torch.Tensor]]:
        """D on labels ⊕ image; DiffAugment moves both together (labels through [-1, 1] and back, so the
        zero fill of translation and cutout leaves all-zero label vectors)."""
        if not self.diffaug:
            return nets["D"](torch.cat([seg, image], 1))
        n = seg.shape[1]
        x = self.d_input(torch.cat([seg * 2 - 1, image], 1))
        return nets["D"](torch.cat([(x[:, :n] + 1) / 2, x[:, n:]], 1))

    def losses(self, phase: str, batch: Batch, nets: Nets, scratch: dict[str, Any]) -> dict[str, torch.Tensor]:
        loss, real = self.cfg.loss, batch["image"]
        seg = scratch["seg"] if "seg" in scratch else scratch.setdefault("seg", self.semantics(batch))
        if phase == "G":
            from img2img.losses import feature_matching_loss, kl_loss

            terms, z = {}, None
            if "E" in nets:
                from img2img.archs.spade import reparameterize

                mu, logvar = nets["E"](real)
                z = reparameterize(mu, logvar)
                if loss.kl > 0:
                    terms["kl"] = loss.kl * kl_loss(mu, logvar, reduction="sum")  # the release sums over the batch
            fake = scratch["fake"] = nets["G"](seg, z)
            fake_out, real_out = self._d(nets, seg, fake), self._d(nets, seg, real)
            terms["gan"] = loss.gan * self.gan_loss.g_loss(fake_out)
            if loss.fm > 0:
                fm = feature_matching_loss([o[:-1] for o in real_out], [o[:-1] for o in fake_out])
                terms["fm"] = loss.fm * (fm / (len(fake_out[0]) - 1) if loss.fm_layers == "mean" else fm)
            if self.vgg is not None:
                terms["vgg"] = loss.vgg * self.vgg(fake, real)
            return terms
        if phase == "D":
            fake = scratch["fake"].detach() if "fake" in scratch else self._generate(nets, seg, real).detach()
            real_out, fake_out = self._d(nets, seg, real), self._d(nets, seg, fake)
            return {"gan": self.gan_loss.d_loss(real_out, fake_out)}
        raise KeyError(f"spade has no phase {phase!r}")

    def _generate(self, nets: Nets, seg: torch.Tensor, style: torch.Tensor | None = None, seed: int | None = None):
        """G's output: the style of `style` (E's mean) with the encoder, else z ~ N(0, I) (`seed` when given)."""
        if "E" not in nets:
            return nets["G"](seg)
        if style is not None:
            return nets["G"](seg, nets["E"](style)[0])
        g = torch.Generator(device=seg.device).manual_seed(seed) if seed is not None else None
        return nets["G"](seg, generator=g)

    # ---- samples, validation, export
    def colourise(self, label: torch.Tensor) -> torch.Tensor:
        """HxW ids -> 3xHxW in [0, 1] in the palette's colours (a fixed random palette without one)."""
        from img2img.io.labels import colourise

        spec = self.spec
        palette = spec.palette or [tuple(c) for c in np.random.default_rng(0).integers(0, 256, (spec.label_nc, 3))]
        ids = label.cpu().numpy()
        rgb = colourise(np.where(ids < spec.label_nc, ids, spec.label_nc), [*palette, (0, 0, 0)])
        return torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float() / 255

    @torch.no_grad()
    def sample_images(self, batch: Batch, nets: Nets) -> list[ImageRow]:
        batch = {k: v[:4] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        seg, real = self.semantics(batch), batch["image"]
        rows = [to01(self._generate(nets, seg, seed=0))]
        if "E" in nets:
            rows.append(to01(self._generate(nets, seg, style=real)))
        truth = to01(real)
        return [[self.colourise(batch["label"][i]), *(r[i] for r in rows), truth[i]] for i in range(len(real))]

    def _val_data(self) -> Any:
        from img2img.data.labels import LabelDataset

        d, size = self.cfg.data, self.cfg.val.size or self.cfg.data.crop_size
        if d.preprocess == "fixed":
            cfg = replace(
                d,
                root=self.cfg.val.root,
                label_dir=None,
                image_dir=None,
                instance_dir=None,
                flip=False,
                max_dataset_size=self.cfg.val.max_images,
            )
        else:
            cfg = replace(
                d,
                root=self.cfg.val.root,
                label_dir=None,
                image_dir=None,
                instance_dir=None,
                preprocess="resize_and_crop",
                load_size=size,
                crop_size=size,
                flip=False,
                max_dataset_size=self.cfg.val.max_images,
            )
        return LabelDataset(cfg, self.spec, seed=0)

    @torch.no_grad()
    def validate(self, nets: Nets, device: torch.device) -> dict[str, float]:
        """L1, PSNR and SSIM (RGB) of G's outputs against the held-out photos (with E also `style_*`: in
        the style of the photo itself, an upper bound rather than a fair comparison)."""
        if not self.cfg.val.root:
            return {}
        data, rows, styled = self._val_data(), [], []
        for i in range(len(data)):
            s = data.sample(i, train=False)
            if s is None:
                continue
            batch = {k: v[None].to(device) for k, v in s.items() if isinstance(v, torch.Tensor)}
            seg = self.semantics(batch)
            rows.append(image_metrics(self._generate(nets, seg, seed=self.cfg.val.seed)[0].float().cpu(), s["image"]))
            if "E" in nets:
                styled.append(
                    image_metrics(self._generate(nets, seg, style=batch["image"])[0].float().cpu(), s["image"])
                )
        if not rows:
            return {}
        return {**mean_metrics(rows), **mean_metrics(styled, "style_"), "val_images": float(len(rows))}

    def export_card(self, net: str) -> dict[str, Any] | None:
        if net != "G":
            return None
        c, spec = self.cfg, self.spec
        g = self.arch("G")
        with torch.device("meta"):
            built = g.build()
        size = c.val.size or c.data.crop_size
        protocol = (
            f"{c.val.root}: first {c.val.max_images} label/photo pairs resized to "
            + (f"{c.data.output_hw()[1]}x{c.data.output_hw()[0]}" if c.data.preprocess == "fixed" else f"{size}x{size}")
            + " (labels nearest, photos bicubic); G in eval mode"
            + (
                f", style z ~ N(0, I) with seed {c.val.seed} (style_*: E's mean of the target photo)"
                if c.model.E
                else ""
            )
            + "; outputs and targets quantised to 8 bits; L1 = mean |out - target| on [0, 1]; PSNR and SSIM on RGB"
        )
        card: dict[str, Any] = {
            "metrics_protocol": protocol,
            "arch": g.arch,
            "arch_kwargs": arch_kwargs(g),
            "task": "synthesize",
            "scale": 1,
            "in_channels": spec.semantic_nc,
            "out_channels": int(arch_kwargs(g).get("out_ch", 3)),
            "value_range": (-1.0, 1.0),
            "size_multiple": int(built.size_multiple),
            "inputs": spec.to_dict(),
            "output": {"size": "same"},
            "description": f"spade G: {c.domains.A} -> {c.domains.B} ({spec.label_nc} classes)",
            "extra": {"family": "spade", "direction": f"{c.domains.A} → {c.domains.B}", "network": "G"},
        }
        if c.model.E is not None:
            card["networks"] = {"E": {"arch": "ConvEncoder", "arch_kwargs": arch_kwargs(self.arch("E")), "from": "E"}}
        vgg = None
        if c.loss.vgg > 0:
            vgg = "imagenet" if self.vgg_pretrained else "random-init (loss.allow_random_vgg=true)"
        card["training"] = {
            "losses": {
                "gan": c.loss.gan,
                "gan_kind": c.loss.gan_kind,
                "fm": c.loss.fm,
                "vgg": c.loss.vgg,
                "kl": c.loss.kl if c.model.E else 0.0,
            },
            "perceptual_vgg": vgg,
        }
        return card

    def data_description(self) -> dict[str, Any]:
        d = self.cfg.data
        return {
            "layout": d.layout,
            "root": d.root,
            "label_nc": self.spec.label_nc,
            "dontcare": d.dontcare,
            "instance": d.instance,
            "preprocess": d.preprocess,
            "load_size": d.load_size,
            "crop_size": d.crop_size,
            "flip": d.flip,
        }


class _Spec:
    """A bundle network's card entry seen as a card (arch, arch_kwargs), for `generator_spec`."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.arch, self.arch_kwargs = entry["arch"], copy.deepcopy(entry.get("arch_kwargs", {}))
