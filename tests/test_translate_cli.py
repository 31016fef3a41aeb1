"""`img2img translate`: any input size comes back the same size and equals the engine's output, CycleGAN
pairs switch direction through their partner file (ours and released), a one-way model refuses the
other direction, and `--train-mode` runs dropout/batch statistics without touching the weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.archs import ResnetGenerator, UNetGenerator
from img2img.cli import main
from img2img.infer import model as infer
from img2img.io.images import read_image, write_image
from img2img.weights.format import Card, save_weights


def generator_card(name: str, net: torch.nn.Module, arch: str, kwargs: dict, maps: str | None) -> Card:
    return Card(
        name=name, arch=arch, arch_kwargs=kwargs, task="translate", value_range=(-1.0, 1.0),
        size_multiple=net.size_multiple, receptive_radius=net.receptive_radius,
        extra={"maps": maps} if maps else {},
    )  # fmt: skip


def save_resnet(folder: Path, stem: str, maps: str | None, seed: int) -> Path:
    torch.manual_seed(seed)
    kwargs = {"ngf": 4, "n_blocks": 1, "norm": "instance"}
    net = ResnetGenerator(**kwargs)
    return save_weights(folder / f"{stem}.safetensors", net, generator_card(stem, net, "ResnetGenerator", kwargs, maps))


def save_unet(folder: Path, stem: str = "labels2photo") -> Path:
    torch.manual_seed(0)
    kwargs = {"num_downs": 6, "ngf": 4, "norm": "batch", "use_dropout": True}
    net = UNetGenerator(**kwargs)
    for m in net.modules():  # non-trivial running statistics, so eval and train mode differ
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return save_weights(folder / f"{stem}.safetensors", net, generator_card(stem, net, "UNetGenerator", kwargs, "BtoA"))


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5)], axis=2)
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)


def test_odd_sizes_come_back_the_same_size_and_match_the_engine(tmp_path: Path) -> None:
    w = save_unet(tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "wide.png", photo(75, 100))
    write_image(src / "tall.png", photo(123, 45, 1))
    assert main(["translate", str(src), str(tmp_path / "out"), "--weights", str(w), "--quiet"]) == 0
    model = infer.load(w, device="cpu")
    for name, (h, ww) in (("wide", (75, 100)), ("tall", (123, 45))):
        out = read_image(tmp_path / "out" / f"{name}.png").rgb
        assert out.shape == (h, ww, 3)
        expected = model(read_image(src / f"{name}.png").rgb)
        assert np.abs(out - expected).max() <= 1 / 255 + 1e-6


def test_direction_picks_the_partner_generator(tmp_path: Path, capsys) -> None:
    a2b = save_resnet(tmp_path, "h2z_G_AB", "AtoB", seed=1)
    b2a = save_resnet(tmp_path, "h2z_G_BA", "BtoA", seed=2)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "x.png", photo(40, 40))
    x = read_image(src / "x.png").rgb
    for direction, expected in (("AtoB", a2b), ("BtoA", b2a)):
        out_dir = tmp_path / direction
        args = ["translate", str(src), str(out_dir), "--weights", str(a2b), "--direction", direction, "--quiet"]
        assert main(args) == 0
        want = infer.load(expected, device="cpu")(x)
        assert np.abs(read_image(out_dir / "x.png").rgb - want).max() <= 1 / 255 + 1e-6
    b2a.unlink()
    assert main(["translate", str(src), str(tmp_path / "none"), "--weights", str(a2b), "--direction", "BtoA"]) == 2
    assert "h2z_G_BA.safetensors" in capsys.readouterr().err


def test_pair_base_name_from_the_catalog(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("IMG2IMG_HOME", str(home))
    save_resnet(home / "weights", "h2z_G_AB", "AtoB", seed=1)
    b2a = save_resnet(home / "weights", "h2z_G_BA", "BtoA", seed=2)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "x.png", photo(40, 40))
    assert main(["translate", str(src), str(tmp_path / "o"), "--model", "h2z", "--direction", "BtoA", "--quiet"]) == 0
    want = infer.load(b2a, device="cpu")(read_image(src / "x.png").rgb)
    assert np.abs(read_image(tmp_path / "o" / "x.png").rgb - want).max() <= 1 / 255 + 1e-6


def test_one_way_model_refuses_the_other_direction(tmp_path: Path, capsys) -> None:
    w = save_unet(tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "x.png", photo(32, 32))
    assert main(["translate", str(src), str(tmp_path / "o"), "--weights", str(w), "--direction", "AtoB"]) == 2
    assert "maps BtoA" in capsys.readouterr().err
    assert (
        main(["translate", str(src), str(tmp_path / "o"), "--weights", str(w), "--direction", "BtoA", "--quiet"]) == 0
    )


def test_released_cyclegan_pair_switches_by_file_name(tmp_path: Path) -> None:
    """junyanz files: latest_net_G_A.pth maps A -> B, latest_net_G_B.pth B -> A."""
    torch.manual_seed(3)
    g_a, g_b = ResnetGenerator(ngf=4, n_blocks=2), ResnetGenerator(ngf=4, n_blocks=2)
    torch.save(g_a.state_dict(), tmp_path / "latest_net_G_A.pth")
    torch.save(g_b.state_dict(), tmp_path / "latest_net_G_B.pth")
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "x.png", photo(36, 36))
    args = ["translate", str(src), str(tmp_path / "o"), "--weights", str(tmp_path / "latest_net_G_A.pth")]
    assert main([*args, "--direction", "BtoA", "--quiet"]) == 0
    want = infer.load(tmp_path / "latest_net_G_B.pth", device="cpu")(read_image(src / "x.png").rgb)
    assert np.abs(read_image(tmp_path / "o" / "x.png").rgb - want).max() <= 1 / 255 + 1e-6


def test_train_mode_uses_batch_statistics_and_leaves_weights_alone(tmp_path: Path) -> None:
    w = save_unet(tmp_path)
    x = photo(64, 64)
    eval_out = infer.load(w, device="cpu")(x)
    model = infer.load(w, device="cpu", train_mode=True)
    before = {k: v.clone() for k, v in model.net.state_dict().items() if "running" in k}
    torch.manual_seed(0)
    first = model(x)
    torch.manual_seed(0)
    again = model(x)
    torch.manual_seed(1)
    other = model(x)
    assert np.array_equal(first, again)  # dropout draws from torch's generator: seeded runs repeat
    assert not np.array_equal(first, other)  # and dropout is on
    assert np.abs(first - eval_out).mean() > 1e-3  # batch statistics, not the running ones
    after = model.net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert model.describe()["tile"] == 0
    with pytest.raises(infer.Img2ImgError, match="whole images"):
        infer.load(w, device="cpu", train_mode=True, tile=32)


def test_no_model_lists_the_choices(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "x.png", photo(8, 8))
    assert main(["translate", str(src), str(tmp_path / "o")]) == 2
    assert "--model NAME or --weights FILE" in capsys.readouterr().err


def test_eval_translate_scores_outputs_against_the_paired_targets(tmp_path: Path) -> None:
    """Per-pair L1/PSNR/SSIM equal the metrics of the engine's output for the chosen input half."""
    import json

    from img2img.eval.metrics import translation_metrics

    w = save_unet(tmp_path)
    data = tmp_path / "val"
    data.mkdir()
    halves = {}
    for i in range(2):
        a, b = photo(40, 52, i), photo(40, 52, 10 + i)[::-1].copy()
        write_image(data / f"{i}.png", np.concatenate([a, b], axis=1))
        halves[str(i)] = (read_image(data / f"{i}.png").rgb[:, :52], read_image(data / f"{i}.png").rgb[:, 52:])
    report = tmp_path / "r.json"
    args = ["eval", "translate", "--weights", str(w), "--data", str(data), "--direction", "BtoA", "--json", str(report)]
    assert main(args) == 0
    got = json.loads(report.read_text())
    model = infer.load(w, device="cpu")
    for row in got["images"]:
        a, b = halves[row["name"]]
        want = translation_metrics(model(b), a)  # BtoA: B is the input, A the target
        assert row["l1"] == pytest.approx(want["l1"], abs=1e-6)
        assert row["psnr"] == pytest.approx(want["psnr"], abs=1e-4)
    assert got["mean"]["l1"] == pytest.approx(np.mean([r["l1"] for r in got["images"]]))
    assert main([*args, "--record", "val_BtoA", "--overwrite"]) == 0  # the scores go into the card, header included
    from img2img.weights.format import read_card

    rec = read_card(w).metrics["val_BtoA"]
    assert rec["l1"] == pytest.approx(got["mean"]["l1"], abs=1e-4) and rec["images"] == 2
    assert "eval mode" in rec["protocol"] and infer.load(w).card.metrics["val_BtoA"] == rec
    assert main(["eval", "translate", "--weights", str(w), "--data", str(tmp_path / "nope")]) == 2


def test_eval_translate_feeds_pairs_the_way_the_model_was_trained(tmp_path: Path) -> None:
    """pix2pix-facades-small maps B (labels) -> A (photo): without --direction it is scored that way."""
    import json

    data = tmp_path / "val"
    data.mkdir()
    a, b = photo(32, 32, 1), photo(32, 32, 2)
    write_image(data / "0.png", np.concatenate([a, b], axis=1))
    for extra, want in (([], "BtoA"), (["--direction", "AtoB"], "AtoB")):
        report = tmp_path / f"r{want}.json"
        args = ["eval", "translate", "--weights", "pix2pix-facades-small", "--data", str(data), "--json", str(report)]
        assert main([*args, *extra]) == 0
        assert json.loads(report.read_text())["direction"] == want
