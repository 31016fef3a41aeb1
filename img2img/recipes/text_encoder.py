"""The text encoder StackGAN is conditioned on, trained here instead of the released char-CNN-RNN
embeddings: a bidirectional-GRU sentence encoder T and an image encoder I, trained together with the
symmetric contrastive matching loss (the sentence-level DAMSM loss of Xu et al. 2018), on the same
captioned images the GAN is then trained on. The vocabulary is built from the training captions and
shipped with T in its card; the stackgan recipe loads both (`text_encoder:`) and keeps T frozen."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from img2img.archs import build_arch
from img2img.config import ArchSpec, arch_kwargs, num
from img2img.data.captions import CaptionDataConfig, CaptionDataset, build_tokenizer
from img2img.errors import ConfigError
from img2img.recipes.base import Batch, ImageRow, Nets, Phase, Recipe
from img2img.recipes.translation import InitConfig
from img2img.text import Tokenizer, matching_loss


def _sentence() -> ArchSpec:
    return ArchSpec({"arch": "SentenceEncoder", "embed_dim": 128, "hidden": 128, "out_dim": 256})


def _image() -> ArchSpec:
    return ArchSpec({"arch": "ImageEncoder", "width": 32, "n_layers": 4, "out_dim": 256})


@dataclass
class VocabConfig:
    min_count: int = num(1, ge=1)  # words seen fewer times in the training captions are unknown
    max_len: int = num(32, ge=1)  # words per caption the encoder reads (the rest are counted as dropped)


@dataclass
class TextEncoderModel:
    T: ArchSpec = field(default_factory=_sentence)  # vocab_size comes from the vocabulary
    I: ArchSpec = field(default_factory=_image)  # noqa: E741 - the paper's image encoder
    init: InitConfig = field(default_factory=InitConfig)


@dataclass
class TextEncoderLoss:
    temperature: float = num(0.1, gt=0.0)  # 1 / gamma_3 of DAMSM


@dataclass
class TextEncoderOptim:
    lr: float = num(1e-3, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class TextEncoderVal:
    split: str | None = None  # shapes: a held-out split (test_seen) for retrieval accuracy; null = none
    max_images: int = num(256, gt=1)


@dataclass
class TextEncoderConfig:
    data: CaptionDataConfig
    vocab: VocabConfig = field(default_factory=VocabConfig)
    model: TextEncoderModel = field(default_factory=TextEncoderModel)
    loss: TextEncoderLoss = field(default_factory=TextEncoderLoss)
    optim: TextEncoderOptim = field(default_factory=TextEncoderOptim)
    val: TextEncoderVal = field(default_factory=TextEncoderVal)


class TextEncoderRecipe(Recipe):
    name = "text_encoder"
    Config = TextEncoderConfig

    def __init__(self, cfg: TextEncoderConfig, *, seed: int = 0) -> None:
        super().__init__(cfg, seed=seed)
        self.check_config(cfg)
        self.tokenizer: Tokenizer | None = None

    @classmethod
    def check_config(cls, cfg: TextEncoderConfig) -> None:
        t, i = arch_kwargs(cfg.model.T), arch_kwargs(cfg.model.I)
        if cfg.model.T.arch != "SentenceEncoder" or cfg.model.I.arch != "ImageEncoder":
            raise ConfigError("model.T must be a SentenceEncoder and model.I an ImageEncoder")
        if "vocab_size" in t:
            raise ConfigError("model.T.vocab_size comes from the training captions; leave it out")
        if t.get("out_dim", 1024) != i.get("out_dim", 1024):
            raise ConfigError(f"model.T.out_dim ({t.get('out_dim', 1024)}) must equal model.I.out_dim "
                              f"({i.get('out_dim', 1024)}): both embed into one space")  # fmt: skip
        if not cfg.data.size:
            raise ConfigError("data.size: the image encoder's input side is needed (e.g. 64)")

    def _tok(self) -> Tokenizer:
        if self.tokenizer is None:
            v = self.cfg.vocab
            self.tokenizer = build_tokenizer(self.cfg.data, min_count=v.min_count, max_len=v.max_len)
        return self.tokenizer

    def t_kwargs(self) -> dict[str, Any]:
        return {**arch_kwargs(self.cfg.model.T), "vocab_size": len(self._tok())}

    def build_networks(self) -> Nets:
        from img2img.layers import init_weights

        m = self.cfg.model
        t = init_weights(build_arch("SentenceEncoder", **self.t_kwargs()), m.init.kind, m.init.gain)
        return {"T": t, "I": init_weights(m.I.build(), m.init.kind, m.init.gain)}

    def phases(self) -> list[Phase]:
        o = self.cfg.optim
        return [Phase("TI", ["T", "I"], lr=o.lr, betas=o.betas)]

    def make_dataset(self) -> CaptionDataset:
        return CaptionDataset(self.cfg.data, self._tok(), self.cfg.data.size, seed=self.seed)

    def losses(self, phase: str, batch: Batch, nets: Nets, scratch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if phase != "TI":
            raise KeyError(f"text_encoder has no phase {phase!r}")
        text = nets["T"](batch["ids"], batch["length"])
        image = nets["I"](batch["image"])
        return {"match": matching_loss(text.float(), image.float(), self.cfg.loss.temperature)}

    @torch.no_grad()
    def sample_images(self, batch: Batch, nets: Nets) -> list[ImageRow]:
        return []

    @torch.no_grad()
    def validate(self, nets: Nets, device: torch.device) -> dict[str, float]:
        """Caption -> image retrieval among held-out images: top-1 accuracy counting an image of the same
        content (shapes: combination) as a hit, against the chance rate of that rule."""
        v = self.cfg.val
        if not v.split:
            return {}
        data = CaptionDataset(
            replace(self.cfg.data, split=v.split, max_images=v.max_images, flip=False), self._tok(),
            self.cfg.data.size, seed=0,
        )  # fmt: skip
        samples = [s for s in (data[i] for i in range(len(data))) if s is not None]
        ids = torch.stack([s["ids"] for s in samples]).to(device)
        lengths = torch.tensor([s["length"] for s in samples]).to(device)
        images = torch.stack([s["image"] for s in samples]).to(device)
        content = torch.tensor([s["content"] for s in samples])
        t = torch.nn.functional.normalize(nets["T"](ids, lengths).float(), dim=1)
        i = torch.nn.functional.normalize(nets["I"](images).float(), dim=1)
        best = (t @ i.T).argmax(1).cpu()
        same = content[:, None] == content[None, :]
        return {"retrieval_top1": float((content[best] == content).float().mean()),
                "retrieval_chance": float(same.float().mean()), "val_images": float(len(samples))}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer": self._tok().to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "tokenizer" in state:
            saved = Tokenizer.from_dict(state["tokenizer"])
            if self.tokenizer is not None and self.tokenizer.vocab != saved.vocab:
                raise ConfigError("the training captions' vocabulary differs from the checkpoint's; resume on the "
                                  "same data (data.root, data.split, vocab.*)")  # fmt: skip
            self.tokenizer = saved

    def export_card(self, net: str) -> dict[str, Any] | None:
        if net != "T":
            return None
        t = self.t_kwargs()
        return {
            "arch": "SentenceEncoder", "arch_kwargs": t, "task": "generate",
            "description": f"text encoder for StackGAN training (vocabulary of {len(self._tok())} tokens); not a "
            "generator on its own: set `text_encoder:` of a stackgan stage-1 config to this file",
            "inputs": {"tokenizer": self._tok().to_dict(), "embedding_dim": t.get("out_dim", 1024)},
            "extra": {"role": "text_encoder", "temperature": self.cfg.loss.temperature,
                      "image_encoder": {"arch": "ImageEncoder", **arch_kwargs(self.cfg.model.I)}},
            "metrics_protocol": f"caption -> image top-1 retrieval on {self.cfg.val.split} (first "
            f"{self.cfg.val.max_images}), a hit = an image of the same content",
        }  # fmt: skip

    def data_description(self) -> dict[str, Any]:
        d = self.cfg.data
        return {"layout": d.layout, "root": d.root, "split": d.split, "size": d.size, "vocabulary": len(self._tok())}
