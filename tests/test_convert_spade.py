"""Released NVlabs SPADE generator files -> our format: options inferred from shapes, spectral norm baked
exactly as torch applies it in eval mode, batch-norm statistics kept, identical outputs, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from img2img.archs.spade import SPADEGenerator
from img2img.errors import WeightsError
from img2img.weights.convert import Context, convert_file, convert_state_dict
from img2img.weights.convert.spade import bake_spectral_norm, receptive_radius, spade_generator_from_state_dict
from img2img.weights.format import build_network

TINY = {"ngf": 4, "hidden": 8}


def labels(n: int, classes: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, classes, (n, h // 4, w // 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    return F.one_hot(ids, classes).permute(0, 3, 1, 2).float()


def released_generator(size: tuple[int, int], **kw: object) -> SPADEGenerator:
    """A spectral-norm generator after two training-mode passes, which move u, v and the BN statistics
    away from their initial values, as in a released file; returned in eval mode."""
    torch.manual_seed(0)
    net = SPADEGenerator(**kw).train()
    with torch.no_grad():
        for step in range(2):
            net(labels(2, net.label_nc, *size, seed=10 + step))
    return net.eval()


CASES = {
    # name: (generator kwargs, label size, conversion hints)
    "normal": ({"label_nc": 5}, (64, 96), {}),
    "more_cityscapes_36": ({"label_nc": 36, "num_upsampling_layers": "more"}, (64, 128), {}),
    "more_hinted": ({"label_nc": 5, "num_upsampling_layers": "more"}, (64, 64), {"num_upsampling_layers": "more"}),
    "most": ({"label_nc": 3, "num_upsampling_layers": "most"}, (128, 128), {}),
    "vae_square": ({"label_nc": 5, "use_vae": True, "z_dim": 8, "crop_size": 64}, (48, 40), {}),
    "vae_2to1_more": (
        {"label_nc": 36, "num_upsampling_layers": "more", "use_vae": True, "z_dim": 8, "crop_size": 128,
         "aspect_ratio": 2.0},
        (64, 128), {},
    ),
    "vae_3to1_hinted": (
        {"label_nc": 5, "use_vae": True, "z_dim": 8, "crop_size": 96, "aspect_ratio": 3.0}, (32, 96),
        {"aspect_ratio": 3.0},
    ),
    "instance_norm": ({"label_nc": 4, "param_free": "instance"}, (32, 64), {}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_converted_generator_matches_the_original(case: str, tmp_path: Path) -> None:
    kw, size, hints = CASES[case]
    net = released_generator(size, **TINY, **kw)
    seg, z = labels(2, net.label_nc, *size, seed=3), torch.randn(2, net.z_dim)
    with torch.no_grad():
        ref = net(seg, z)
    sd = net.state_dict()
    assert any(k.endswith("weight_orig") for k in sd) and not any(k.endswith("conv_0.weight") for k in sd)
    if hints:
        out_sd, card = spade_generator_from_state_dict(sd, Context(name=case), **hints)
    else:
        torch.save(sd, tmp_path / "latest_net_G.pth")  # the released file: a bare state dict
        out_sd, card = convert_file(tmp_path / "latest_net_G.pth")
    expected = {**kw, **TINY, "spectral": False}
    assert {k: v for k, v in card.arch_kwargs.items() if k in expected} == pytest.approx(expected)
    assert card.arch == "SPADEGenerator" and card.task == "synthesize" and card.value_range == (-1.0, 1.0)
    assert card.extra["semantic_nc"] == card.in_channels == net.label_nc
    assert card.size_multiple == (1 if net.use_vae else net.size_multiple)
    assert not any(k.endswith(("weight_orig", "weight_u", "weight_v")) for k in out_sd)
    converted = build_network(card, out_sd)
    with torch.no_grad():
        out = converted(seg, z)
    assert out.shape == ref.shape and ref.std() > 1e-3
    assert (out - ref).abs().max() < 1e-4  # float32 rounding of the baked weights; the bar is 1/255
    if kw.get("param_free", "batch") == "batch":  # running statistics are kept, not reset
        key = "head_0.norm_0.param_free_norm.running_var"
        assert torch.equal(out_sd[key], sd[key]) and not torch.allclose(sd[key], torch.ones_like(sd[key]))


def test_bake_equals_torch_spectral_norm_in_eval_mode() -> None:
    torch.manual_seed(0)
    for layer, x in ((torch.nn.Conv2d(6, 5, 3), torch.randn(2, 6, 8, 8)), (torch.nn.Linear(7, 4), torch.randn(3, 7))):
        sn = torch.nn.utils.spectral_norm(layer).train()
        u0 = sn.weight_u.clone()
        with torch.no_grad():
            for _ in range(3):
                sn(x)  # power iterations update u and v
        assert not torch.allclose(u0, sn.weight_u)
        sn.eval()
        with torch.no_grad():
            y = sn(x)  # eval: W = W_orig / (uᵀ W_orig v) with the stored u, v
        baked, n = bake_spectral_norm({f"m.{k}": v for k, v in sn.state_dict().items()})
        assert n == 1 and set(baked) == {"m.weight", "m.bias"}
        assert torch.allclose(baked["m.weight"], sn.weight, rtol=1e-6, atol=1e-7)
        plain = type(layer)(*((6, 5, 3) if isinstance(layer, torch.nn.Conv2d) else (7, 4)))
        plain.load_state_dict({"weight": baked["m.weight"], "bias": baked["m.bias"]})
        with torch.no_grad():
            assert torch.allclose(plain(x), y, atol=1e-6)


def test_normal_and_more_are_reported_as_indistinguishable() -> None:
    sd = SPADEGenerator(5, **TINY).state_dict()
    _, card = convert_state_dict(sd, name="g")
    assert card.arch_kwargs["num_upsampling_layers"] == "normal" and card.size_multiple == 32
    assert any("`normal` and `more` have identical tensors" in note for note in card.extra["notes"])
    _, card = spade_generator_from_state_dict(sd, Context(), num_upsampling_layers="more")
    assert card.arch_kwargs["num_upsampling_layers"] == "more" and card.size_multiple == 64
    with pytest.raises(WeightsError, match="'most' does not fit the file .*has no up_4"):
        spade_generator_from_state_dict(sd, Context(), num_upsampling_layers="most")


def test_old_file_without_batch_counters_converts() -> None:
    sd = {k: v for k, v in SPADEGenerator(3, **TINY).state_dict().items() if not k.endswith("num_batches_tracked")}
    out, card = convert_state_dict(sd)
    assert "head_0.norm_0.param_free_norm.num_batches_tracked" in out
    assert any("num_batches_tracked" in note for note in card.extra["notes"])


def _released_sd(**kw: object) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return SPADEGenerator(5, **TINY, **kw).state_dict()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda sd: sd.pop("up_3.conv_1.weight_orig"), r"SPADE generator.*missing 1 \(e.g. \['up_3.conv_1.weight'\]"),
        (lambda sd: sd.pop("up_1.conv_s.weight_v"), r"NVlabs SPADE generator.*up_1.conv_s.weight_orig .*lacks"),
        (lambda sd: sd.update(G_middle_2=sd.pop("G_middle_1.conv_0.bias")), r"NVlabs SPADE generator.*unexpected"),
        (
            lambda sd: sd.update({"head_0.norm_0.mlp_shared.1.weight": sd.pop("head_0.norm_0.mlp_shared.0.weight")}),
            r"NVlabs SPADE generator.*lacks 'head_0.norm_0.mlp_shared.0.weight'",
        ),
        (lambda sd: sd.update({"fc.weight": sd["fc.weight"][:, :4]}), r"NVlabs SPADE generator.*shape mismatch.*fc"),
    ],
    ids=["truncated", "orphan_u", "renamed_block", "renamed_mlp", "wrong_shape"],
)
def test_damaged_files_name_the_expected_architecture(damage, message: str) -> None:
    sd = _released_sd()
    damage(sd)
    with pytest.raises(WeightsError, match=message):
        convert_state_dict(sd, name="broken")


def test_vae_grid_that_cannot_be_guessed_asks_for_the_aspect_ratio() -> None:
    sd = _released_sd(use_vae=True, z_dim=8, crop_size=96, aspect_ratio=3.0)  # a 1 x 3 grid
    with pytest.raises(WeightsError, match=r"grid of 3 cells.*aspect_ratio=W/H"):
        convert_state_dict(sd)


def test_receptive_radius_bounds_the_reach_of_a_label_pixel() -> None:
    """Changing one label column changes the output only within the card's receptive radius."""
    net = released_generator((32, 64), label_nc=3, ngf=2, hidden=4)
    radius = receptive_radius("normal")
    seg = labels(1, 3, 32, 2 * radius + 96, seed=1)[..., : 32 * ((2 * radius + 96) // 32)]
    centre = seg.shape[-1] // 2
    changed = seg.clone()
    changed[..., centre] = torch.roll(changed[..., centre], 1, dims=1)  # another class in one column
    with torch.no_grad():
        diff = (net(seg) - net(changed)).abs().amax(dim=(0, 1, 2))
    cols = torch.nonzero(diff > 0).flatten()
    reach = int((cols - centre).abs().max())
    assert 32 < reach <= radius  # far beyond a 3x3 conv (the coarse grid), never beyond the bound
