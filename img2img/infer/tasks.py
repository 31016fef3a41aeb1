"""The task kinds beyond image -> image, on the same engine pieces (device and precision choice, NaN/Inf
fp32 rerun, output limits): label map -> image (`LabelsModel`, synthesize: SPADE and friends) and
text -> image (`TextModel`, generate: StackGAN). Neither is tiled: they run whole inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from img2img.errors import ImageError, Img2ImgError, LabelError, TextError
from img2img.infer.model import Model, TileForward
from img2img.io.labels import LabelSpec, check_ids, semantic_input
from img2img.weights.format import Card


def _image_out(y: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """NCHW [0, 1] -> N x H x W x C float32 numpy (resized bicubic to `size` when given)."""
    if size is not None and tuple(y.shape[-2:]) != size:
        y = F.interpolate(y, size=size, mode="bicubic", align_corners=False).clamp_(0, 1)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


class LabelsModel(Model):
    """Label map (HxW integer class ids) [+ instance map] [+ style image] -> HxWx3 float32 photo in [0, 1].

    The label map becomes the one-hot input inside (never mapped through a value range, resized nearest
    only), padded by replicating its border to the network's size multiple and cropped back. With a style
    latent (`z_dim` in the card) the style comes from a style image through the bundle's encoder `E`
    (its mean, so one style image gives one output), or is drawn from N(0, I) with `seed`.
    """

    kind = "labels"

    def __init__(
        self, card: Card, nets: dict[str, nn.Module], *, device: str | torch.device = "auto",
        precision: str = "auto", max_output_pixels: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(card, device=device, precision=precision, max_output_pixels=max_output_pixels)
        self.spec = LabelSpec.from_dict(card.inputs)
        net = nets[""]
        self.size_multiple = math.lcm(int(card.size_multiple), int(getattr(net, "size_multiple", 1)))
        # A generator with a fixed output grid (SPADE with the VAE) sees label maps resized to that grid.
        self.fixed_size: tuple[int, int] | None = getattr(net, "output_size", None)
        from img2img.layers import uses_image_statistics

        self._per_image_statistics = uses_image_statistics(net.eval())
        self._forward = TileForward(net, self.device, self.precision, card.value_range)
        self.net = self._forward.net
        self.notes = self._forward.notes
        encoder = nets.get("E")
        if self.spec.style and encoder is None:
            raise Img2ImgError(f"{card.name}: its card promises a style encoder E, but the bundle has none")
        self.encoder = encoder.eval().requires_grad_(False).to(self.device) if encoder is not None else None

    def __call__(
        self,
        labels: np.ndarray,
        *,
        instances: np.ndarray | None = None,
        style: np.ndarray | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """HxW int ids (+ HxW instance ids, + HxWx3 float style image in [0, 1]) -> HxWx3 float32 in [0, 1]."""
        ids = _check_label_array(labels, "label map")
        check_ids(ids, self.spec, "label map")
        inst = _check_label_array(instances, "instance map") if instances is not None else None
        h, w = ids.shape
        self._check_size(h, w, (h, w))
        x = torch.from_numpy(semantic_input(ids, self.spec, inst))[None]
        if self.fixed_size is not None:
            x = F.interpolate(x, size=self.fixed_size, mode="nearest")
        else:
            m = self.size_multiple
            # Instance norm needs more than one value per channel at the coarsest grid: at least 2 x 2 cells.
            least = 2 * m if self._per_image_statistics else m
            ph, pw = max(h + -h % m, least), max(w + -w % m, least)
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        z = self._latent(style, seed)
        y = self._forward(x, *([] if z is None else [z]), map_input=False)
        y = y[..., :h, :w] if self.fixed_size is None else y
        return _image_out(y, (h, w))[0]

    def _latent(self, style: np.ndarray | None, seed: int | None) -> torch.Tensor | None:
        if not self.spec.z_dim:
            if style is not None:
                raise Img2ImgError(f"{self.card.name} has no style input; leave the style image out")
            return None
        if style is None:
            g = torch.Generator().manual_seed(0 if seed is None else int(seed))
            return torch.randn(1, self.spec.z_dim, generator=g)
        if self.encoder is None:
            raise Img2ImgError(f"{self.card.name} has no style encoder: give a seed instead of a style image")
        if not (isinstance(style, np.ndarray) and style.ndim == 3 and style.shape[2] == 3):
            raise ImageError(f"the style image must be HxWx3 float in [0, 1], got {getattr(style, 'shape', style)}")
        lo, hi = self.card.value_range
        s = torch.from_numpy(np.ascontiguousarray(style, dtype=np.float32)).permute(2, 0, 1)[None] * (hi - lo) + lo
        with torch.inference_mode():
            mu, _ = self.encoder(s.to(self.device))
        return mu.float().cpu()

    def describe(self) -> dict:
        spec = self.spec
        return {
            **super().describe(), "label_nc": spec.label_nc, "semantic_nc": spec.semantic_nc,
            "instance": spec.instance, "style": spec.style, "z_dim": spec.z_dim, "classes": list(spec.classes),
            "params": sum(p.numel() for p in self.net.parameters()),
        }  # fmt: skip


def _check_label_array(a: Any, what: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.ndim != 2 or min(a.shape) < 1:
        raise LabelError(f"the {what} must be a 2-D array of integer ids, got {getattr(a, 'shape', type(a).__name__)}")
    if not np.issubdtype(a.dtype, np.integer):
        raise LabelError(f"the {what} must hold integer ids, not {a.dtype}; read files with img2img.io.labels")
    return a.astype(np.int64, copy=False)


@dataclass
class TextSpec:
    """What a text -> image model takes (its card's `inputs`)."""

    embedding_dim: int  # one embedding per prompt
    noise_dim: int  # z drawn per sample
    stages: list[dict[str, Any]]  # [{"stage": 1, "module": "STAGE1_G", "output": 0, "size": 64}, ...]
    tokenizer: dict[str, Any] = field(default_factory=dict)  # vocabulary; empty = embeddings only

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextSpec:
        try:
            spec = cls(int(d["embedding_dim"]), int(d["noise_dim"]), list(d["stages"]), dict(d.get("tokenizer") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise TextError(f"a text model's card needs inputs.embedding_dim, noise_dim and stages ({e})") from None
        if not spec.stages or any(not isinstance(s, dict) or "stage" not in s for s in spec.stages):
            raise TextError("inputs.stages must list the stages, e.g. [{'stage': 1, 'module': '', 'output': 0}]")
        return spec


@dataclass
class Generated:
    """The images of one prompt: `images[k]` is sample k (HxWx3 float32 in [0, 1])."""

    prompt: str
    images: list[np.ndarray]
    unknown_words: list[str]
    seeds: list[int]


class TextModel(Model):
    """Prompts (or precomputed embeddings) -> images, at any of the bundle's stages.

    The bundle holds the generator (the main network; its stages are submodules named in the card) and,
    unless it takes embeddings only, the text encoder `T` with its tokenizer in the card. Words the
    vocabulary lacks are reported in each result. Sample k of a call with `seed` S uses seed S + k, the
    same whatever else is in the batch."""

    kind = "text"

    def __init__(
        self, card: Card, nets: dict[str, nn.Module], *, device: str | torch.device = "auto",
        precision: str = "auto", max_output_pixels: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(card, device=device, precision=precision, max_output_pixels=max_output_pixels)
        self.spec = TextSpec.from_dict(card.inputs)
        self.stages = {int(s["stage"]): s for s in self.spec.stages}
        self._forwards: dict[int, TileForward] = {}
        for n, s in self.stages.items():
            module = nets[""].get_submodule(s.get("module", "")) if s.get("module") else nets[""]
            pick = int(s.get("output", 0))  # the image's place in what the stage returns

            def output(y: Any, i: int = pick) -> torch.Tensor:
                return y[i] if isinstance(y, tuple | list) else y

            self._forwards[n] = TileForward(module, self.device, self.precision, card.value_range, output=output)
            self.notes = self._forwards[n].notes
        self.net = nets[""]
        from img2img.text import BundledEncoder, Tokenizer

        self.text_encoder: Any = None  # img2img.text.TextEncoder
        if self.spec.tokenizer and nets.get("T") is not None:
            tokenizer = Tokenizer.from_dict(self.spec.tokenizer)
            self.text_encoder = BundledEncoder(tokenizer, nets["T"], self.spec.embedding_dim)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.text_encoder, "tokenizer", None)

    @property
    def last_stage(self) -> int:
        return max(self.stages)

    def set_text_encoder(self, encoder: Any) -> None:
        """Use `encoder` (an `img2img.text.TextEncoder`: `embedding_dim` and `encode(prompts)`) for prompts,
        in place of the bundled one or where the model takes embeddings only."""
        from img2img.text import TextEncoder

        if not isinstance(encoder, TextEncoder):
            raise TextError("a text encoder needs an embedding_dim and an encode(prompts) method")
        if encoder.embedding_dim != self.spec.embedding_dim:
            raise TextError(
                f"{self.card.name} takes {self.spec.embedding_dim}-d embeddings; this encoder gives "
                f"{encoder.embedding_dim}-d ones"
            )
        self.text_encoder = encoder

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, list[list[str]]]:
        """Embeddings (N x embedding_dim) and the unknown words of each prompt."""
        if self.text_encoder is None:
            raise TextError(
                f"{self.card.name} takes embeddings only (no text encoder): pass embeddings=..., or give it "
                "one with set_text_encoder"
            )
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise TextError("give at least one prompt (a non-empty string)")
        try:
            emb, unknown = self.text_encoder.encode(list(prompts))
        except TextError:
            raise
        except Exception as e:  # noqa: BLE001 - a user's encoder: say whose failure it is
            raise TextError(f"the text encoder failed on the prompts: {type(e).__name__}: {e}") from e
        emb = self._check_embeddings(emb.detach().cpu().numpy() if isinstance(emb, torch.Tensor) else emb)
        if len(emb) != len(prompts) or len(unknown) != len(prompts):
            raise TextError(f"the text encoder gave {len(emb)} embeddings for {len(prompts)} prompts")
        return emb, [list(u) for u in unknown]

    def __call__(
        self, prompts: list[str] | str | None = None, *, embeddings: np.ndarray | None = None, n: int = 1,
        seed: int = 0, stage: int | None = None,
    ) -> list[Generated]:  # fmt: skip
        """One `Generated` per prompt (or embedding row), each with `n` images."""
        stage = self.last_stage if stage is None else int(stage)
        if stage not in self.stages:
            raise Img2ImgError(f"{self.card.name} has stage(s) {sorted(self.stages)}, not {stage}")
        if not isinstance(n, int) or not 1 <= n <= 64:
            raise Img2ImgError(f"the number of images per prompt must be 1..64, not {n!r}")
        if (prompts is None) == (embeddings is None):
            raise TextError("give prompts or embeddings (one of them)")
        if isinstance(prompts, str):
            prompts = [prompts]
        if embeddings is not None:
            emb = self._check_embeddings(embeddings)
            texts, unknown = [f"embedding {i}" for i in range(len(emb))], [[] for _ in range(len(emb))]
        else:
            emb, unknown = self.encode(list(prompts))
            texts = list(prompts)
        results = []
        for i, text in enumerate(texts):
            seeds = [int(seed) + k for k in range(n)]
            images = []
            for s in seeds:  # one sample at a time: sample k depends on (seed + k, prompt) alone
                noise = torch.randn(1, self.spec.noise_dim, generator=_rng(s))
                with torch.random.fork_rng(devices=[]):  # conditioning augmentation draws from the global RNG
                    torch.manual_seed(s)
                    images.extend(_image_out(self._forwards[stage](emb[i : i + 1], noise, map_input=False)))
            results.append(Generated(text, images, unknown[i], seeds))
        return results

    def _check_embeddings(self, e: Any) -> torch.Tensor:
        a = np.asarray(e)
        if a.ndim != 2 or a.shape[1] != self.spec.embedding_dim or a.shape[0] < 1:
            raise TextError(f"embeddings must be N x {self.spec.embedding_dim}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all():
            raise TextError("embeddings must be finite floating-point numbers")
        return torch.from_numpy(a.astype(np.float32))

    def describe(self) -> dict:
        return {
            **super().describe(), "stages": sorted(self.stages), "embedding_dim": self.spec.embedding_dim,
            "vocabulary": len(self.tokenizer) if self.tokenizer else 0,
            "params": sum(p.numel() for p in self.net.parameters()),
        }  # fmt: skip


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


MODELS: dict[str, type[Model]] = {"labels": LabelsModel, "text": TextModel}
