"""Shared fixtures: where the development data is, small translation data sets and run overrides, and
the CI rule that a missing `../shared/data` is a failure there (CI=true), not a silent skip."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.archs import build_arch
from img2img.io.images import write_image
from img2img.io.labels import LabelSpec
from img2img.recipes import RECIPES
from img2img.train.config import load_config
from img2img.weights.format import Card, bundle_state_dict, save_weights

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data"))
TINY_UNET = {"arch": "UNetGenerator", "num_downs": 5, "ngf": 4, "norm": "batch", "use_dropout": True}
TINY_RESNET = {"arch": "ResnetGenerator", "ngf": 4, "n_blocks": 1, "norm": "instance"}
_DATA_WORDS = ("IMG2IMG_DATA", "shared data", "not found under", "not found at", "not present")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a test skipped for missing development data fails: CI always has the data."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI", "").lower() == "true":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if any(w in reason for w in _DATA_WORDS):
            report.outcome = "failed"
            report.longrepr = f"CI=true but the development data is missing: {reason}"


@pytest.fixture
def data_root() -> Path:
    """The development data folder (`$IMG2IMG_DATA`, default `../shared/data`)."""
    return DATA


def smooth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    f = rng.uniform(0.05, 0.2, size=3)
    return np.stack([0.5 + 0.4 * np.sin(xx * f[c] + yy * f[(c + 1) % 3]) for c in range(3)], axis=2)


@pytest.fixture
def facades_like(tmp_path: Path) -> Path:
    """train/ and val/ folders of 96x48 photo|label side-by-side images."""
    for split, n in (("train", 3), ("val", 2)):
        (tmp_path / split).mkdir(parents=True)
        for i in range(n):
            photo = smooth(48, 48, i)
            label = np.round(photo * 3) / 3  # a posterised "label map" of the photo
            write_image(tmp_path / split / f"{i}.png", np.concatenate([photo, label], axis=1))
    return tmp_path


@pytest.fixture
def domains(tmp_path: Path) -> Path:
    """trainA/, trainB/, testA/, testB/ with a few 40x40 images each."""
    for folder, n, off in (("trainA", 3, 0), ("trainB", 2, 10), ("testA", 2, 20), ("testB", 2, 30)):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(n):
            write_image(tmp_path / folder / f"{i}.png", smooth(40, 40, off + i))
    return tmp_path


def common(out: Path) -> list[str]:
    return [
        f"train.out_dir={out}", "train.steps=2", "train.batch_size=1", "train.num_workers=0",
        "train.progress=false", "train.log_every=1", "train.sample_every=2", "train.resume=null",
        "train.init_from={}", "train.device=cpu",
    ]  # fmt: skip


def pix2pix_overrides(out: Path, root: Path) -> list[str]:
    return [*common(out), f"data.root={root / 'train'}", "data.load_size=36", "data.crop_size=32",
            f"model.G={json.dumps(TINY_UNET)}", f"val.root={root / 'val'}", "val.max_images=2"]  # fmt: skip


def cyclegan_overrides(out: Path, root: Path) -> list[str]:
    return [*common(out), f"data.root={root}", "data.load_size=36", "data.crop_size=32",
            f"model.G={json.dumps(TINY_RESNET)}", "model.D.ndf=4", f"val.dir_A={root / 'testA'}",
            f"val.dir_B={root / 'testB'}", "val.max_images=2"]  # fmt: skip


def recipe_and_nets(config: str, overrides: list[str]):
    cfg = load_config(REPO / "configs" / config, overrides)
    recipe = RECIPES[cfg.recipe](cfg.spec, seed=0)
    torch.manual_seed(0)
    nets = recipe.build_networks()
    recipe.aux_modules()
    return recipe, nets


@pytest.fixture
def translation_runs() -> types.SimpleNamespace:
    """Overrides for 2-step tiny pix2pix / CycleGAN runs, and a built recipe with its networks."""
    return types.SimpleNamespace(
        pix2pix_overrides=pix2pix_overrides, cyclegan_overrides=cyclegan_overrides, recipe_and_nets=recipe_and_nets
    )


# --- Tiny label-map and text models (real networks, a few thousand parameters) ---

SPEC = LabelSpec(label_nc=3, dontcare=255, palette=[(0, 0, 0), (255, 0, 0), (0, 0, 255)], classes=["a", "b", "c"])
G_KW = {"in_ch": SPEC.semantic_nc, "out_ch": 3, "ngf": 4, "n_blocks": 1, "norm": "none"}


def labels_card(**kw) -> Card:
    return Card(
        name="tiny-labels", arch="ResnetGenerator", arch_kwargs=G_KW, task="synthesize", value_range=(-1.0, 1.0),
        size_multiple=4, inputs=SPEC.to_dict(), **kw,
    )  # fmt: skip


def save_labels_model(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    g = build_arch("ResnetGenerator", **G_KW).eval()
    return save_weights(tmp_path / "tiny-labels.safetensors", g, labels_card()), g


@pytest.fixture(scope="session")
def tiny_labels() -> types.SimpleNamespace:
    """The tiny labels model's spec, generator kwargs and card maker, and savers of both tiny models
    (`save_labels(folder)`, `save_text(folder)`) for fixtures of any scope."""
    return types.SimpleNamespace(
        spec=SPEC, g_kw=G_KW, card=labels_card, save_labels=save_labels_model, save_text=save_text_model
    )


@pytest.fixture
def tiny_labels_model(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A 3-class (+ don't care 255) labels -> image model: a ResNet generator on one-hot labels."""
    return save_labels_model(tmp_path)


def save_text_model(tmp_path: Path) -> Path:
    """A tiny two-stage text -> image bundle: tokenizer in the card, sentence encoder T, Stage-II G
    holding its Stage I (16 px -> 32 px)."""
    from img2img.text import Tokenizer

    tok = Tokenizer.build(["a red circle on a blue background", "a green square on a black background"])
    t_kw = {"vocab_size": len(tok), "embed_dim": 8, "hidden": 8, "out_dim": 16}
    s1 = {"t_dim": 16, "c_dim": 4, "z_dim": 6, "gf": 4, "image_size": 16}
    g_kw = {"stage1": s1, "gf": 4, "r_num": 1, "up_factor": 2}
    torch.manual_seed(2)
    t, g = build_arch("SentenceEncoder", **t_kw), build_arch("StageIIGenerator", **g_kw)
    stages = [{"stage": 1, "module": "STAGE1_G", "output": 0, "size": 16}, {"stage": 2, "module": "", "output": 1}]
    card = Card(
        name="tiny-text", arch="StageIIGenerator", arch_kwargs=g_kw, task="generate", value_range=(-1.0, 1.0),
        inputs={"kind": "text", "tokenizer": tok.to_dict(), "embedding_dim": 16, "noise_dim": 6, "stages": stages},
        output={"size": "fixed", "height": 32, "width": 32},
        networks={"T": {"arch": "SentenceEncoder", "arch_kwargs": t_kw}},
    )  # fmt: skip
    return save_weights(tmp_path / "tiny-text.safetensors", bundle_state_dict(g, T=t), card)


@pytest.fixture
def tiny_text_model(tmp_path: Path) -> Path:
    """A tiny two-stage text -> image bundle (see `save_text_model`)."""
    return save_text_model(tmp_path)


@pytest.fixture
def one_thread():
    """Tiny convs on a shared 2-core machine run far faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh $IMG2IMG_HOME (weights cache, ONNX exports, compiled code) for one test."""
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
