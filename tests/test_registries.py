"""Every registered network and every task kind has a tiny case here, so adding an arch to ARCHS (or a
task kind) without one fails: each builds from plain keyword arguments, runs a forward pass with finite
outputs, and survives our weights format (save -> card -> rebuild gives the same outputs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from img2img.archs import ARCHS, build_arch
from img2img.weights.format import TASK_KINDS, Card, build_network, load_weights, save_weights


def img(c: int, s: int) -> Callable[[], tuple]:
    return lambda: (torch.rand(1, c, s, s) * 2 - 1,)


def TEXT_IN() -> tuple:  # noqa: N802 - an input maker like img()'s
    return torch.randn(2, 8), torch.randn(2, 4)


def TOKENS_IN() -> tuple:  # noqa: N802
    return (torch.tensor([[2, 3, 4, 0]]),)


def ONE_HOT_IN() -> tuple:  # noqa: N802
    return (torch.eye(3)[torch.randint(0, 3, (1, 32, 32))].permute(0, 3, 1, 2),)


STAGE1 = {"t_dim": 8, "c_dim": 4, "z_dim": 4, "gf": 16, "image_size": 16}
# arch -> (tiny kwargs, inputs of one forward pass)
TINY: dict[str, tuple[dict, Callable[[], tuple]]] = {
    "RRDBNet": ({"nf": 8, "nb": 1, "gc": 4, "scale": 2}, img(3, 8)),
    "SRVGGNetCompact": ({"nf": 8, "num_conv": 2, "scale": 2}, img(3, 8)),
    "VGGStyleDiscriminator": ({"nf": 4, "input_size": 128}, img(3, 128)),
    "UNetDiscriminatorSN": ({"nf": 4}, img(3, 32)),
    "UNetGenerator": ({"num_downs": 5, "ngf": 4}, img(3, 32)),
    "ResnetGenerator": ({"ngf": 4, "n_blocks": 1}, img(3, 16)),
    "PatchDiscriminator": ({"ndf": 4, "n_layers": 1}, img(6, 32)),
    "PixelDiscriminator": ({"ndf": 4}, img(6, 16)),
    "StageIGenerator": (STAGE1, TEXT_IN),
    "StageIDiscriminator": ({"df": 4, "c_dim": 4, "image_size": 16}, img(3, 16)),
    "StageIIGenerator": ({"stage1": STAGE1, "gf": 16, "r_num": 1, "up_factor": 2}, TEXT_IN),
    "StageIIDiscriminator": ({"df": 4, "c_dim": 4, "image_size": 32}, img(3, 32)),
    "SentenceEncoder": ({"vocab_size": 10, "embed_dim": 4, "hidden": 4, "out_dim": 8}, TOKENS_IN),
    "ImageEncoder": ({"width": 4, "n_layers": 2, "out_dim": 8}, img(3, 32)),
    "SPADEGenerator": ({"label_nc": 3, "ngf": 4, "hidden": 8}, ONE_HOT_IN),
    "ConvEncoder": ({"ndf": 4, "z_dim": 8, "crop_size": 64}, img(3, 64)),
    "MultiscaleDiscriminator": ({"input_nc": 6, "ndf": 4, "n_layers": 2}, img(6, 32)),
}  # fmt: skip


def flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out if o is not None for t in flat(o)]


def test_every_registered_arch_has_a_tiny_case() -> None:
    assert set(TINY) == set(ARCHS), f"add a tiny case for {sorted(set(ARCHS) - set(TINY))} to TINY"


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_arch_builds_runs_and_round_trips_through_our_format(name: str, tmp_path: Path) -> None:
    kwargs, inputs = TINY[name]
    torch.manual_seed(0)
    net = build_arch(name, **kwargs).eval()
    x = inputs()
    with torch.no_grad():
        torch.manual_seed(1)
        want = flat(net(*x))
    assert want and all(bool(torch.isfinite(t).all()) for t in want)
    card = Card(name=name.lower(), arch=name, arch_kwargs=kwargs, task="upscale", scale=kwargs.get("scale", 1))
    path = save_weights(tmp_path / "w.safetensors", net, card)
    sd, back = load_weights(path)
    rebuilt = build_network(back, sd)
    with torch.no_grad():
        torch.manual_seed(1)
        got = flat(rebuilt(*x))
    assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))


def test_every_task_kind_has_a_model_class() -> None:
    from img2img.infer.image import ImageModel
    from img2img.infer.tasks import MODELS

    kinds = {"image": ImageModel, **MODELS}
    assert set(kinds) == set(TASK_KINDS.values())
    assert all(cls.kind == kind for kind, cls in kinds.items())


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*/*.yaml"))


def test_every_recipe_ships_configs_and_every_config_names_a_recipe() -> None:
    import yaml

    from img2img.recipes import RECIPES

    named = {yaml.safe_load(p.read_text())["recipe"] for p in CONFIGS}
    assert named <= set(RECIPES), f"configs name unknown recipes {sorted(named - set(RECIPES))}"
    assert set(RECIPES) <= named, f"recipes without a shipped config: {sorted(set(RECIPES) - named)}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(config: Path) -> None:
    from img2img.train.config import load_config

    cfg = load_config(config)
    assert cfg.recipe and cfg.train.steps > 0
