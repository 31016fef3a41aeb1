"""Released pix2pix / CycleGAN generator files -> our format: options inferred from shapes, old
InstanceNorm running statistics dropped, identical outputs, any-size inference, and clear failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import img2img.infer.model
from img2img.archs import build_arch
from img2img.errors import WeightsError
from img2img.layers import init_weights
from img2img.weights.convert import convert_file, convert_state_dict
from img2img.weights.format import build_network, save_weights


def random_net(arch: str, **kw: object) -> torch.nn.Module:
    """Our network with N(0, 0.02) weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    net = init_weights(build_arch(arch, **kw), "normal", 0.02)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(1234)
    return net.eval()


def old_instance_stats(sd: dict[str, torch.Tensor], norm_keys: list[str]) -> dict[str, torch.Tensor]:
    """What torch < 0.4 saved for parameter-free InstanceNorm layers: running statistics buffers."""
    out = dict(sd)
    for prefix, c in norm_keys:
        out[f"{prefix}.running_mean"] = torch.zeros(c)
        out[f"{prefix}.running_var"] = torch.ones(c)
    return out


CASES = {
    # name: (arch kwargs, family, size multiple, saved-file tweak)
    "resnet_9blocks_old_instance_stats": (
        "ResnetGenerator", {"in_ch": 3, "out_ch": 3, "ngf": 8, "n_blocks": 9, "norm": "instance", "use_dropout": False},
        "cyclegan", 4, "old_stats",
    ),
    "resnet_6blocks_dropout_grey_out": (
        "ResnetGenerator", {"in_ch": 3, "out_ch": 1, "ngf": 8, "n_blocks": 6, "norm": "instance", "use_dropout": True},
        "cyclegan", 4, "module_prefix",
    ),
    "unet_256_batch": (
        "UNetGenerator", {"in_ch": 3, "out_ch": 3, "num_downs": 8, "ngf": 4, "norm": "batch", "use_dropout": True},
        "pix2pix", 256, "legacy_format",
    ),
    "unet_128_instance_old_stats": (
        "UNetGenerator", {"in_ch": 1, "out_ch": 3, "num_downs": 7, "ngf": 4, "norm": "instance", "use_dropout": True},
        "pix2pix", 128, "old_stats",
    ),
    "unet_256_batch_no_batch_counter": (
        "UNetGenerator", {"in_ch": 3, "out_ch": 3, "num_downs": 8, "ngf": 4, "norm": "batch", "use_dropout": True},
        "pix2pix", 256, "no_counter",
    ),
}  # fmt: skip


def released_file(tmp_path: Path, case: str) -> tuple[Path, torch.nn.Module]:
    arch, kw, _family, _mult, tweak = CASES[case]
    net = random_net(arch, **kw)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    if tweak == "old_stats":
        norms = [(n, m.num_features) for n, m in net.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)]
        sd = old_instance_stats(sd, norms)
        sd |= {f"{n}.num_batches_tracked": torch.tensor(0) for n, _ in norms[:2]}
    elif tweak == "no_counter":
        sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    elif tweak == "module_prefix":
        sd = {f"module.{k}": v for k, v in sd.items()}
    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=tweak != "legacy_format")
    return path, net


@pytest.mark.parametrize("case", list(CASES))
def test_released_generator_converts_to_an_identical_network(tmp_path: Path, case: str) -> None:
    arch, kw, family, multiple, tweak = CASES[case]
    path, net = released_file(tmp_path, case)
    sd, card = convert_file(path)
    assert card.arch == arch and card.arch_kwargs == kw
    assert card.task == "translate" and card.scale == 1 and card.value_range == (-1.0, 1.0)
    assert card.size_multiple == multiple and card.in_channels == kw["in_ch"] and card.out_channels == kw["out_ch"]
    assert card.extra["family"] == family and card.extra["train_mode_eval"] is False
    assert card.name == "latest_net_G" and card.source == "latest_net_G.pth"
    notes = " ".join(card.extra["notes"])
    assert ("dropped" in notes and "InstanceNorm running-statistic" in notes) == (tweak == "old_stats")
    assert ("num_batches_tracked" in notes) == (tweak == "no_counter")
    assert ("train mode" in notes) == (arch == "UNetGenerator")
    assert all(v.dtype in (torch.float32, torch.int64) for v in sd.values())
    ours = build_network(card, sd)
    side = max(multiple, 32)  # instance norm needs more than one pixel at the 4x-downsampled level
    x = torch.rand(2, kw["in_ch"], side, side) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ours(x), net(x))


def test_converted_generator_translates_any_image_size(tmp_path: Path) -> None:
    path, net = released_file(tmp_path, "unet_256_batch")
    sd, card = convert_file(path)
    saved = save_weights(tmp_path / "facades_label2photo.safetensors", sd, card)
    model = img2img.infer.model.load(saved, device="cpu", tile=0)
    assert model.size_multiple == 256
    img = np.random.default_rng(0).random((750, 1000, 3), dtype=np.float32)
    out = model(img)
    assert out.shape == (750, 1000, 3) and out.dtype == np.float32
    # Whole-image path: [0, 1] -> [-1, 1], reflect-pad to 768 x 1024, run, crop, back to [0, 1].
    x = torch.from_numpy(img).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        want = (net(F.pad(x, (0, 24, 0, 18), mode="reflect"))[..., :750, :1000] + 1) / 2
    assert np.abs(out - want[0].permute(1, 2, 0).numpy()).max() < 1e-4
    tiled = img2img.infer.model.load(saved, device="cpu")(img)  # automatic tiling (512 px on CPU) keeps the size too
    assert tiled.shape == (750, 1000, 3) and np.isfinite(tiled).all()


def test_resnet_translates_sizes_that_are_not_multiples_of_4(tmp_path: Path) -> None:
    path, _ = released_file(tmp_path, "resnet_9blocks_old_instance_stats")
    saved = save_weights(tmp_path / "horse2zebra.safetensors", *convert_file(path))
    out = img2img.infer.model.load(saved, device="cpu")(np.full((101, 75, 3), 0.5, dtype=np.float32))
    assert out.shape == (101, 75, 3)


def test_damaged_generators_name_the_expected_architecture(tmp_path: Path) -> None:
    path, _ = released_file(tmp_path, "resnet_9blocks_old_instance_stats")
    sd = torch.load(path, weights_only=True)
    missing_block = {k: v for k, v in sd.items() if not k.startswith("model.13.")}
    with pytest.raises(WeightsError, match=r"blocks at model\.\[10, 11, 12, 14"):
        convert_state_dict(missing_block)
    wrong = dict(sd, **{"model.11.conv_block.5.weight": torch.zeros(16, 32, 3, 3)})  # 4 ngf = 32
    with pytest.raises(WeightsError, match=r"do not fit ResnetGenerator.*model\.11\.conv_block\.5\.weight"):
        convert_state_dict(wrong)
    path, _ = released_file(tmp_path, "unet_256_batch")
    sd = torch.load(path, weights_only=True)
    no_outer_up = {k: v for k, v in sd.items() if not k.startswith("model.model.3.")}
    with pytest.raises(WeightsError, match=r"U-Net.*lacks 'model\.model\.3\.weight'.*pix2pix/CycleGAN"):
        convert_state_dict(no_outer_up)
    extra = dict(sd, **{"model.model.1.model.9.weight": torch.zeros(3)})
    with pytest.raises(WeightsError, match=r"do not fit UNetGenerator.*unexpected"):
        convert_state_dict(extra)


def test_unrelated_state_dicts_still_fail_with_the_layout_message() -> None:
    foreign = {"encoder.0.weight": torch.zeros(8, 3, 3, 3), "decoder.0.weight": torch.zeros(3, 8, 3, 3)}
    with pytest.raises(WeightsError, match="unknown checkpoint layout"):
        convert_state_dict(foreign, name="foreign")
    # A PatchGAN discriminator file (model.0 ... model.11) is not a generator: not claimed.
    d = build_arch("PatchDiscriminator", in_ch=6, ndf=4).state_dict()
    with pytest.raises(WeightsError, match="unknown checkpoint layout"):
        convert_state_dict(d, name="latest_net_D")
