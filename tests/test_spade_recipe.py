"""The SPADE recipe on tiny networks: every loss term is the paper's (hinge D on real / fake, feature
matching averaged over discriminators, VGG19 relu taps, KL of the style encoder), training runs through
the one engine and resumes, and the exported model loads, synthesizes (CLI too) and fine-tunes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import img2img
from img2img.cli import main
from img2img.errors import ConfigError
from img2img.io.images import write_image
from img2img.losses import GANLoss, feature_matching_loss, kl_loss
from img2img.recipes import RECIPES
from img2img.train import Trainer
from img2img.train.checkpoint import list_checkpoints, load_state
from img2img.train.config import load_config

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "spade" / "small_facades.yaml"
VAE = REPO / "configs" / "spade" / "small_facades_vae.yaml"
COLOURS = np.array([[30, 30, 30], [200, 40, 40], [40, 200, 40]], np.float32) / 255


def scene(i: int, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids with classes 0..2 and don't-care 255, instance ids, a photo coloured by class); the data
    resizes them to 64 px, the smallest size whose base grid (1/32) instance norm can normalise."""
    rng = np.random.default_rng(i)
    ids = np.zeros((size, size), np.uint8)
    ids[size // 2 :] = 1
    c = int(rng.integers(4, size - 12))
    ids[4:12, c : c + 8] = 2
    ids[-8:, :8] = 255
    inst = (ids.astype(np.uint16) * 1000) + (np.arange(size)[None, :] >= size // 2)
    photo = COLOURS[np.minimum(ids, 2)] + rng.normal(0, 0.03, (size, size, 3)).astype(np.float32)
    return ids, inst, np.clip(photo, 0, 1)


@pytest.fixture
def label_data(tmp_path: Path) -> Path:
    """train/ (32 px) and val/ (64 px) with labels/ (8-bit ids), images/, instances/ (16-bit) of a few scenes."""
    for split, n, off, size in (("train", 3, 0, 32), ("val", 2, 10, 64)):
        for sub in ("labels", "images", "instances"):
            (tmp_path / split / sub).mkdir(parents=True)
        for i in range(n):
            ids, inst, photo = scene(off + i, size)
            Image.fromarray(ids, mode="L").save(tmp_path / split / "labels" / f"{i}.png")
            Image.fromarray(inst).save(tmp_path / split / "instances" / f"{i}.png")
            write_image(tmp_path / split / "images" / f"{i}.png", photo)
    return tmp_path


def overrides(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        f"train.out_dir={out}", "train.steps=2", "train.batch_size=1", "train.num_workers=0", "train.progress=false",
        "train.log_every=1", "train.sample_every=2", "train.val_every=0", "train.resume=null", "train.device=cpu",
        "train.ckpt_every=2", f"data.root={data / 'train'}", "data.layout=folders", "data.palette=null",
        "data.dontcare=255", "data.instance=true", "data.load_size=72", "data.crop_size=64",
        "model.G.ngf=2", "model.G.hidden=8", "model.D.ndf=4", "model.D.n_layers=2", f"val.root={data / 'val'}",
        "val.max_images=2", *extra,
    ]  # fmt: skip


def vae(*extra: str) -> list[str]:
    return ["model.G.z_dim=8", "model.E.ndf=2", "model.E.z_dim=8", *extra]


def recipe_and_nets(config: Path, opts: list[str]):
    cfg = load_config(config, opts)
    recipe = RECIPES["spade"](cfg.spec, seed=0)
    torch.manual_seed(0)
    nets = recipe.build_networks()
    recipe.aux_modules()
    ds = recipe.make_dataset()
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    return recipe, nets, batch


def test_every_loss_term_is_the_papers(label_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_vgg_here"))
    opts = overrides(tmp_path / "r", label_data, *vae("loss.vgg=10", "loss.allow_random_vgg=true"))
    recipe, nets, batch = recipe_and_nets(VAE, opts)
    for net in nets.values():
        net.eval().requires_grad_(False)  # no spectral-norm power step per call: the same D for every check
    assert recipe.spec.label_nc == 3 and recipe.spec.semantic_nc == 5  # 3 classes + don't care + edges
    assert any("untrained VGG19" in n for n in recipe.notes) and any("scanned 3 label maps" in n for n in recipe.notes)
    seg = recipe.semantics(batch)
    assert seg.shape == (2, 5, 64, 64) and torch.equal(seg[:, :4].sum(1), torch.ones(2, 64, 64))
    dontcare = batch["label"] == 255
    assert dontcare.any() and torch.equal(seg[:, 3] == 1, dontcare)  # id 255 lands in the don't-care channel
    scratch: dict = {}
    torch.manual_seed(1)
    g = recipe.losses("G", batch, nets, scratch)
    assert set(g) == {"gan", "fm", "vgg", "kl"} and all(bool(torch.isfinite(v)) for v in g.values())
    assert all(float(v) > 0 for k, v in g.items() if k != "gan")
    # Feature matching: 10 x (per D the sum over its intermediate layers), averaged over the 2 Ds.
    real_out = nets["D"](torch.cat([seg, batch["image"]], 1))
    fake_out = nets["D"](torch.cat([seg, scratch["fake"]], 1))
    per_d = [sum(float((f - r).abs().mean()) for f, r in zip(fo[:-1], ro[:-1], strict=True))
             for fo, ro in zip(fake_out, real_out, strict=True)]  # fmt: skip
    assert len(per_d) == 2 and float(g["fm"]) == pytest.approx(10 * np.mean(per_d), rel=1e-4)
    assert float(g["gan"]) == pytest.approx(-np.mean([float(o[-1].mean()) for o in fake_out]), rel=1e-4)
    mu, logvar = nets["E"](batch["image"])
    assert float(g["kl"]) == pytest.approx(0.05 * float(kl_loss(mu, logvar, reduction="sum")), rel=1e-4)
    assert set(recipe.vgg.layer_weights) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"}
    assert recipe.vgg.layer_weights["relu1_1"] == 1 / 32 and float(g["vgg"]) == pytest.approx(
        10 * float(recipe.vgg(scratch["fake"], batch["image"])), rel=1e-4
    )
    # Hinge D: relu(1 - D(real)) + relu(1 + D(fake)), averaged over the scales, on the detached fake.
    d = recipe.losses("D", batch, nets, scratch)
    fake_d = nets["D"](torch.cat([seg, scratch["fake"].detach()], 1))
    want = np.mean([float(torch.relu(1 - r[-1]).mean() + torch.relu(1 + f[-1]).mean())
                    for r, f in zip(real_out, fake_d, strict=True)])  # fmt: skip
    assert set(d) == {"gan"} and float(d["gan"]) == pytest.approx(want, rel=1e-4)
    hinge = GANLoss("hinge")
    assert float(hinge.d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0))) == 0  # confident and right: no loss
    assert float(hinge.d_loss(torch.zeros(4), torch.zeros(4))) == 2
    # fm_layers=mean divides by the layer count (n_layers + 1 - 1 intermediate maps per D).
    recipe.cfg.loss.fm_layers = "mean"
    torch.manual_seed(1)
    g2 = recipe.losses("G", batch, nets, {})
    n_int = len(fake_out[0]) - 1
    assert n_int == 2
    want_mean = 10 * float(feature_matching_loss([o[:-1] for o in real_out], [o[:-1] for o in fake_out])) / n_int
    assert float(g2["fm"]) == pytest.approx(want_mean, rel=0.2)  # a fresh z: close, not equal


def test_trains_resumes_exports_and_synthesizes(label_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = Trainer(load_config(CONFIG, overrides(run, label_data))).fit()
    assert result.step == 2 and set(result.losses) == {"G/gan", "G/fm", "D/gan"}
    assert all(np.isfinite(v) for v in result.losses.values())
    assert {"l1", "psnr", "ssim"} <= set(result.metrics) and result.metrics["val_images"] == 2
    assert (run / "samples" / "step_00000002.png").is_file()
    # Resume continues from step 2 with the scanned label_nc kept in the checkpoint.
    more = Trainer(load_config(CONFIG, overrides(run, label_data, "train.steps=3", "train.resume=auto"))).fit()
    assert more.step == 3 and load_state(list_checkpoints(run)[0])["recipe"]["label_nc"] == 3
    [weights] = more.exported
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["task"] == "synthesize" and card["in_channels"] == 5 and card["arch_kwargs"]["label_nc"] == 5
    assert card["inputs"]["label_nc"] == 3 and card["inputs"]["dontcare"] == 255 and card["inputs"]["instance"]
    assert card["training"]["losses"]["fm"] == 10 and card["training"]["recipe"] == "spade"
    model = img2img.load(weights, device="cpu")
    ids, inst, _ = scene(5, 48)
    out = model(ids[:37, :45].astype(np.int64), instances=inst[:37, :45].astype(np.int64))
    assert out.shape == (37, 45, 3) and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
    # The CLI: a folder of id PNGs with their instance maps.
    code = main(["synthesize", str(label_data / "val" / "labels"), str(tmp_path / "out"), "--weights", str(weights),
                 "--instances", str(label_data / "val" / "instances"), "--device", "cpu"])  # fmt: skip
    assert code == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]
    assert Image.open(tmp_path / "out" / "0.png").size == (64, 64)


def test_style_encoder_bundle_gives_styles_and_seeds(label_data: Path, tmp_path: Path) -> None:
    opts = overrides(tmp_path / "vae", label_data, *vae("train.steps=1", "val.root=null"))
    [weights] = Trainer(load_config(VAE, opts)).fit().exported
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["networks"]["E"]["arch"] == "ConvEncoder" and card["inputs"]["style"] and card["inputs"]["z_dim"] == 8
    model = img2img.load(weights, device="cpu")
    ids, inst, photo = scene(7)
    ids, inst = ids.astype(np.int64), inst.astype(np.int64)
    a, b = model(ids, instances=inst, seed=1), model(ids, instances=inst, seed=2)
    assert a.shape == (32, 32, 3) and not np.allclose(a, b)  # multimodal: another seed, another picture
    assert np.array_equal(a, model(ids, instances=inst, seed=1))
    styled = model(ids, instances=inst, style=photo)
    assert styled.shape == (32, 32, 3) and np.isfinite(styled).all()
    # -n 2 from the CLI: one file per seed, named by the default template NAME_sSEED.
    out = tmp_path / "many"
    val = label_data / "val"
    code = main(["synthesize", str(val / "labels" / "0.png"), str(out), "--weights", str(weights),
                 "--instances", str(val / "instances"), "-n", "2", "--seed", "3", "--device", "cpu"])  # fmt: skip
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["0_s3.png", "0_s4.png"]
    assert not np.array_equal(np.asarray(Image.open(out / "0_s3.png")), np.asarray(Image.open(out / "0_s4.png")))


def test_finetune_starts_from_an_exported_model(label_data: Path, tmp_path: Path, capsys) -> None:
    opts = overrides(tmp_path / "first", label_data, *vae("train.steps=1", "val.root=null"))
    [weights] = Trainer(load_config(VAE, opts)).fit().exported
    args = ["finetune", "--weights", str(weights), "--data", str(label_data / "val"), "--out-dir",
            str(tmp_path / "ft"), "train.steps=1", "train.sample_every=0", "train.progress=false"]  # fmt: skip
    assert main([*args, "--dry-run"]) == 0
    import yaml

    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["recipe"] == "spade" and cfg["data"]["layout"] == "folders"
    assert cfg["data"]["label_nc"] == 3 and cfg["data"]["instance"] and cfg["data"]["dontcare"] == 255
    assert cfg["train"]["init_from"] == {"G": str(weights), "E": str(weights)} and cfg["val"]["root"] is None
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "init G from" in err and "init E from" in err and "bundle network E" in err
    state = load_state(list_checkpoints(tmp_path / "ft")[0])
    start = img2img.load(weights, device="cpu")
    e0 = {k: v for k, v in start.encoder.state_dict().items() if k.endswith("weight_orig")}
    moved = max(float((state["networks"]["E"][k] - v).abs().max()) for k, v in e0.items())
    assert 0 < moved < 0.05  # E continued from the bundle, one small step away


def test_config_errors_name_the_keys(label_data: Path, tmp_path: Path) -> None:
    base = overrides(tmp_path / "x", label_data)
    with pytest.raises(ConfigError, match="model.G.label_nc"):
        load_config(CONFIG, [*base, "data.label_nc=3", "model.G.label_nc=3"])  # needs 5: + don't care + edges
    with pytest.raises(ConfigError, match="use_vae"):
        load_config(CONFIG, [*base, "model.G.use_vae=true"])
    with pytest.raises(ConfigError, match="multiple of 32"):
        load_config(CONFIG, [*base, "data.load_size=40", "data.crop_size=40"])
    with pytest.raises(ConfigError, match="instance norm"):
        load_config(CONFIG, [*base, "data.load_size=32", "data.crop_size=32"])  # a 1x1 base grid
    with pytest.raises(ConfigError, match="crop_size"):
        load_config(VAE, [*overrides(tmp_path / "y", label_data, *vae()), "model.G.crop_size=128"])


def test_diffaugment_moves_labels_and_image_together(label_data: Path, tmp_path: Path) -> None:
    opts = overrides(tmp_path / "r", label_data, "loss.diffaugment=[translation,cutout]")
    recipe, nets, batch = recipe_and_nets(CONFIG, opts)
    seen = []
    nets["D"].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    torch.manual_seed(0)
    recipe.losses("D", batch, nets, {})
    x = seen[0]  # D's view of the real pairs (the fake ones come from an untrained G)
    onehot, image = x[:, :4], x[:, 5:]
    assert set(torch.unique(onehot).tolist()) <= {0.0, 1.0}  # still one-hot, or all zero where filled
    filled = (onehot.sum(1) == 0)[:, None].expand_as(image)
    assert bool(filled.any()) and bool((image[filled] == -1).all())  # the cutout / fill hit both alike
    red = onehot[:, 1] == 1  # class 1 is red in the photos: translation kept labels and pixels aligned
    assert float((image[:, 0][red] > image[:, 1][red]).float().mean()) > 0.95
    with pytest.raises(ConfigError, match="color"):
        load_config(CONFIG, [*opts, "loss.diffaugment=[color]"])


def test_finetune_starts_from_a_released_generator(label_data: Path, tmp_path: Path, capsys) -> None:
    from img2img.archs import build_arch

    torch.manual_seed(0)
    released = build_arch("SPADEGenerator", label_nc=5, ngf=2, hidden=8)  # NVlabs names: weight_orig / u / v
    torch.save(released.state_dict(), tmp_path / "latest_net_G.pth")
    args = ["finetune", "--weights", str(tmp_path / "latest_net_G.pth"), "--data", str(label_data / "val"),
            "--out-dir", str(tmp_path / "ft"), "train.steps=1", "train.batch_size=1", "train.num_workers=0",
            "train.progress=false", "train.sample_every=0", "train.device=cpu", "loss.vgg=0", "data.load_size=72",
            "data.crop_size=64", "model.D.ndf=4", "model.D.n_layers=2"]  # fmt: skip
    assert main([*args, "--dry-run"]) == 2  # coco_stuff's 182 classes (+ 2) do not fit 5 input channels
    assert "model.G.label_nc (5)" in capsys.readouterr().err
    assert main([*args, "data.label_nc=3"]) == 0  # 3 classes + don't care 255 + instance edges = 5
    assert "init G from" in capsys.readouterr().err
    assert load_state(list_checkpoints(tmp_path / "ft")[0])["step"] == 1
