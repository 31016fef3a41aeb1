"""Released StackGAN generators (`netG_epoch_N.pth`, bare state dicts) convert with every size read from the
tensor shapes and generate from user-supplied embeddings; broken files are refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from img2img.archs.stackgan import StageIGenerator, StageIIGenerator
from img2img.cli import main
from img2img.errors import WeightsError
from img2img.weights.convert import convert_file, convert_state_dict


def release_stage1(gf: int, c_dim: int = 128, z_dim: int = 100, t_dim: int = 1024) -> dict[str, torch.Tensor]:
    """A Stage-I file laid out as the release writes it (names and shapes from its model code; old torch:
    batch norms without num_batches_tracked)."""
    g = torch.Generator().manual_seed(0)
    ngf = 8 * gf

    def t(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    def bn(prefix: str, ch: int) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1 + t(ch), f"{prefix}.bias": t(ch), f"{prefix}.running_mean": t(ch),
                f"{prefix}.running_var": 1 + t(ch).abs()}  # fmt: skip

    sd = {"ca_net.fc.weight": t(2 * c_dim, t_dim), "ca_net.fc.bias": t(2 * c_dim),
          "fc.0.weight": t(ngf * 16, z_dim + c_dim), **bn("fc.1", ngf * 16)}  # fmt: skip
    for k in range(1, 5):
        cin, cout = ngf // 2 ** (k - 1), ngf // 2**k
        sd[f"upsample{k}.1.weight"] = t(cout, cin, 3, 3)
        sd.update(bn(f"upsample{k}.2", cout))
    sd["img.0.weight"] = t(3, ngf // 16, 3, 3)
    return sd


def test_a_released_stage1_file_converts_and_generates_from_embeddings(tmp_path, capsys) -> None:
    path = tmp_path / "netG_epoch_600.pth"
    torch.save(release_stage1(gf=4), path)  # COCO's release has GF 192, birds 128: any width converts
    sd, card = convert_file(path)
    assert card.arch == "StageIGenerator" and card.task == "generate"
    assert card.arch_kwargs == {"t_dim": 1024, "c_dim": 128, "z_dim": 100, "gf": 4, "image_size": 64}
    assert card.inputs["embedding_dim"] == 1024 and card.inputs["tokenizer"] == {}
    out = tmp_path / "stage1.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    emb = np.random.default_rng(0).standard_normal((2, 1024)).astype(np.float32)
    np.save(tmp_path / "captions.npy", emb)
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "gen"), "--weights", str(path), "--embeddings",
                 str(tmp_path / "captions.npy"), "-n", "2"]) == 0  # fmt: skip
    from img2img.io.images import read_image

    files = sorted((tmp_path / "gen").glob("*.png"))
    assert len(files) == 4 and all(read_image(f).rgb.shape == (64, 64, 3) for f in files)
    # The converted network is the release's: same tensors, same forward.
    net = StageIGenerator(**card.arch_kwargs).eval()
    net.load_state_dict(sd)
    ref = StageIGenerator(**card.arch_kwargs).eval()
    ref.load_state_dict(release_stage1(gf=4), strict=False)
    e, z = torch.from_numpy(emb), torch.randn(2, 100)
    with torch.no_grad():
        torch.testing.assert_close(net(e, z, torch.Generator().manual_seed(1))[0],
                                   ref(e, z, torch.Generator().manual_seed(1))[0])  # fmt: skip


def test_a_stage2_file_gives_both_stages() -> None:
    torch.manual_seed(0)
    g2 = StageIIGenerator(stage1={"gf": 4, "t_dim": 32, "c_dim": 8, "z_dim": 10, "image_size": 16}, gf=8, r_num=1,
                          up_factor=2)  # fmt: skip
    sd = {k: v for k, v in g2.state_dict().items() if not k.endswith("num_batches_tracked")}
    _, card = convert_state_dict(sd, name="birds-stage2")
    assert card.arch == "StageIIGenerator" and card.arch_kwargs["r_num"] == 1 and card.arch_kwargs["up_factor"] == 2
    assert [(s["stage"], s["module"], s["size"]) for s in card.inputs["stages"]] == [(1, "STAGE1_G", 16), (2, "", 32)]
    assert card.output == {"size": "fixed", "height": 32, "width": 32}


def test_broken_files_are_refused_with_the_reason() -> None:
    sd = release_stage1(gf=4)
    del sd["upsample3.1.weight"]
    with pytest.raises(WeightsError, match="not consecutive|does not fit"):
        convert_state_dict(sd)
    sd = release_stage1(gf=4)
    sd["fc.0.weight"] = sd["fc.0.weight"][:, :-3]  # z + c no longer what the up-blocks expect? still a z of 97
    _, card = convert_state_dict(sd)
    assert card.arch_kwargs["z_dim"] == 97
    sd = release_stage1(gf=4)
    sd["img.0.weight"] = torch.zeros(3, 7, 3, 3)
    with pytest.raises(WeightsError, match="wrong shapes"):
        convert_state_dict(sd)
