"""`img2img eval sr`: the published bicubic baselines on Set5/Set14 (golden numbers), the three data
layouts, model evaluation (grey, Y-only), saved outputs, JSON report, and clear failures."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.archs import SRVGGNetCompact
from img2img.cli import main
from img2img.eval.metrics import psnr, rgb_to_y, ssim
from img2img.eval.sr import DatasetError, discover_sr_dataset, load_pair
from img2img.io.resize import imresize
from img2img.weights.format import Card, save_weights

DATA = Path(os.environ.get("IMG2IMG_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SR = DATA / "sr"
needs_benchmarks = pytest.mark.skipif(
    not (SR / "Set5" / "image_SRF_4").is_dir() or not (SR / "Set14" / "image_SRF_4").is_dir(),
    reason=f"Set5/Set14 not found under {SR} (set IMG2IMG_DATA)",
)


def _eval(tmp_path: Path, *argv: str) -> dict:
    out = tmp_path / "report.json"
    out.unlink(missing_ok=True)  # each call writes a new report (an existing --json is never replaced silently)
    assert main(["eval", "sr", *argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def _photo(h: int, w: int, seed: int, grey: bool = False) -> np.ndarray:
    """A smooth random uint8 image (bicubic-friendly, like a photo)."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 1 if grey else 3))
    img = np.clip(imresize(small, output_size=(h, w)), 0, 1)
    img = np.round(img * 255).astype(np.uint8)
    return img[..., 0] if grey else img


def _save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


# --- Golden numbers: MATLAB bicubic x4 (and x2) as published in the SR literature. ---


@pytest.mark.slow
@needs_benchmarks
@pytest.mark.parametrize(
    ("bench", "scale", "want_psnr", "want_ssim", "count"),
    [("Set5", 4, 28.42, 0.8104, 5), ("Set14", 4, 26.00, 0.7027, 14), ("Set5", 2, 33.66, 0.9299, 5)],
)
def test_bicubic_reproduces_published_baseline(tmp_path, capsys, bench, scale, want_psnr, want_ssim, count):
    report = _eval(tmp_path, "--weights", "bicubic", "--data", str(SR / bench), "--scale", str(scale))
    assert report["model"] == "bicubic" and report["scale"] == scale and report["count"] == count
    assert report["layout"] == "paired-files" and report["data"].endswith(f"image_SRF_{scale}")
    assert report["mean"]["psnr"] == pytest.approx(want_psnr, abs=0.1)
    assert report["mean"]["ssim"] == pytest.approx(want_ssim, abs=0.002)
    assert report["protocol"]["crop_border"] == scale
    names = [r["name"] for r in report["images"]]
    assert names == sorted(names) and len(names) == count
    out = capsys.readouterr().out
    assert f"{report['mean']['psnr']:.3f}" in out and "mean" in out and names[0] in out


@pytest.mark.slow
@needs_benchmarks
def test_hr_only_folder_makes_the_same_lr_as_the_benchmark(tmp_path):
    # Layout 3 (HR only, LR made on the fly) must give exactly the numbers of the MATLAB-made LR files.
    plain = tmp_path / "hr_only"
    plain.mkdir()
    for hr in sorted((SR / "Set5" / "image_SRF_4").glob("*_HR.png")):
        shutil.copy(hr, plain / hr.name.replace("_SRF_4_HR", ""))
    paired = _eval(tmp_path, "--weights", "bicubic", "--data", str(SR / "Set5" / "image_SRF_4"))
    made = _eval(tmp_path, "--weights", "bicubic", "--data", str(plain))
    assert made["layout"] == "hr-only" and "MATLAB bicubic" in made["protocol"]["lr"]
    for a, b in zip(paired["images"], made["images"], strict=True):
        assert (a["psnr"], a["ssim"]) == (b["psnr"], b["ssim"]), a["name"]


# --- Layout discovery. ---


def test_layouts_are_detected(tmp_path):
    hr, lr = _photo(32, 24, 0), _photo(8, 6, 1)
    _save(tmp_path / "a" / "x_HR.png", hr)
    _save(tmp_path / "a" / "x_LR.png", lr)
    ds = discover_sr_dataset(tmp_path / "a", 4)
    assert ds.layout == "paired-files" and [p.name for p in ds.pairs] == ["x"]
    # lr/ + hr/ folders, including the DIV2K naming 0801x4.png <-> 0801.png
    _save(tmp_path / "b" / "HR" / "0801.png", hr)
    _save(tmp_path / "b" / "LR" / "0801x4.png", lr)
    ds = discover_sr_dataset(tmp_path / "b", 4)
    assert ds.layout == "lr-hr-folders" and ds.pairs[0].name == "0801"
    _save(tmp_path / "c" / "one.png", hr)
    _save(tmp_path / "c" / "two.jpg", hr)
    ds = discover_sr_dataset(tmp_path / "c", 4)
    assert ds.layout == "hr-only" and [p.name for p in ds.pairs] == ["one", "two"]
    # a benchmark root picks the folder for the scale
    _save(tmp_path / "d" / "image_SRF_2" / "y_HR.png", hr)
    _save(tmp_path / "d" / "image_SRF_2" / "y_LR.png", _photo(16, 12, 2))
    assert discover_sr_dataset(tmp_path / "d", 2).root == tmp_path / "d" / "image_SRF_2"
    with pytest.raises(DatasetError, match=r"no image_SRF_4/ .*\['2'\]"):
        discover_sr_dataset(tmp_path / "d", 4)


def test_bad_layouts_fail_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no evaluation images found"):
        discover_sr_dataset(tmp_path / "empty", 4)
    with pytest.raises(DatasetError, match="not a folder"):
        discover_sr_dataset(tmp_path / "missing", 4)
    _save(tmp_path / "p" / "a_HR.png", _photo(16, 16, 0))
    with pytest.raises(DatasetError, match=r"unmatched: \['a'\]"):
        discover_sr_dataset(tmp_path / "p", 4)
    _save(tmp_path / "q" / "hr" / "a.png", _photo(16, 16, 0))
    _save(tmp_path / "q" / "lr" / "b.png", _photo(4, 4, 0))
    with pytest.raises(DatasetError, match=r"no HR for \['b.png'\], no LR for \['a.png'\]"):
        discover_sr_dataset(tmp_path / "q", 4)


def test_lr_hr_size_disagreeing_with_scale_is_an_error(tmp_path, capsys):
    _save(tmp_path / "s" / "a_HR.png", _photo(32, 32, 0))
    _save(tmp_path / "s" / "a_LR.png", _photo(16, 16, 1))  # a x2 pair
    code = main(["eval", "sr", "--weights", "bicubic", "--data", str(tmp_path / "s"), "--scale", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "LR 16x16 times 4 is 64x64, but HR is 32x32" in err and "--scale" in err
    # HR a few pixels larger than scale x LR is cropped (modcrop), not rejected
    _save(tmp_path / "t" / "a_HR.png", _photo(34, 35, 0))
    _save(tmp_path / "t" / "a_LR.png", _photo(8, 8, 1))
    lr, hr = load_pair(discover_sr_dataset(tmp_path / "t", 4).pairs[0], 4)
    assert lr.shape == (8, 8, 3) and hr.shape == (32, 32, 3)


def test_hr_only_crops_to_a_multiple_of_the_scale(tmp_path):
    img = _photo(30, 27, 3)
    _save(tmp_path / "h" / "a.png", img)
    lr, hr = load_pair(discover_sr_dataset(tmp_path / "h", 4).pairs[0], 4)
    assert hr.shape == (28, 24, 3) and lr.shape == (7, 6, 3)
    np.testing.assert_array_equal(np.round(lr * 255), imresize(img[:28, :24], 0.25))


# --- Models through the CLI. ---


def _nearest_model(path: Path, channels: int = 3, scale: int = 4) -> Path:
    """SRVGGNetCompact with zero weights outputs exactly the nearest-neighbour upscale of its input."""
    kw = {"in_ch": channels, "out_ch": channels, "nf": 4, "num_conv": 1, "scale": scale}
    net = SRVGGNetCompact(**kw)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    card = Card(
        name=path.stem, arch="SRVGGNetCompact", arch_kwargs=kw, task="upscale", scale=scale,
        in_channels=channels, out_channels=channels,
    )  # fmt: skip
    return save_weights(path, net, card)


def _nearest(img: np.ndarray, s: int) -> np.ndarray:
    return img.repeat(s, axis=0).repeat(s, axis=1)


def test_model_scores_and_saved_images_match_an_independent_computation(tmp_path, capsys):
    weights = _nearest_model(tmp_path / "nn-x4.safetensors")
    hr = _photo(48, 40, 4)
    grey = _photo(40, 32, 5, grey=True)
    _save(tmp_path / "d" / "colour.png", hr)
    _save(tmp_path / "d" / "grey.png", grey)
    saved = tmp_path / "out"
    report = _eval(tmp_path, "--weights", str(weights), "--data", str(tmp_path / "d"), "--save-images", str(saved))
    assert report["model"] == "nn-x4" and report["scale"] == 4 and report["weights"] == str(weights)
    got = {r["name"]: r for r in report["images"]}
    up = _nearest(imresize(hr, 0.25), 4)
    assert got["colour"]["psnr"] == pytest.approx(psnr(up, hr, crop_border=4), abs=1e-5)
    assert got["colour"]["ssim"] == pytest.approx(ssim(up, hr, crop_border=4), abs=1e-5)
    # grey: replicated for the RGB model, compared as luminance against the grey HR
    up_g = _nearest(imresize(grey, 0.25), 4)
    assert got["grey"]["psnr"] == pytest.approx(psnr(up_g, grey, crop_border=4), abs=1e-5)
    assert report["mean"]["psnr"] == pytest.approx((got["colour"]["psnr"] + got["grey"]["psnr"]) / 2, abs=1e-5)
    np.testing.assert_array_equal(np.asarray(Image.open(saved / "colour.png")), up)
    assert "nn-x4 x4" in capsys.readouterr().out
    # a second run must not overwrite the saved images unless asked
    code = main(["eval", "sr", "--weights", str(weights), "--data", str(tmp_path / "d"), "--save-images", str(saved)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    code = main(["eval", "sr", "--weights", str(weights), "--data", str(tmp_path / "d"),
                 "--save-images", str(saved), "--overwrite"])  # fmt: skip
    assert code == 0


def test_y_channel_model_is_fed_and_scored_on_y(tmp_path):
    weights = _nearest_model(tmp_path / "y-x2.safetensors", channels=1, scale=2)
    hr = _photo(32, 32, 6)
    _save(tmp_path / "d" / "a.png", hr)
    report = _eval(tmp_path, "--weights", str(weights), "--data", str(tmp_path / "d"))
    assert report["scale"] == 2  # from the model
    y_lr = np.floor(rgb_to_y(imresize(hr, 0.5)) + 0.5)  # its 8-bit Y output
    want = psnr(_nearest(y_lr, 2) / 255, rgb_to_y(hr) / 255, crop_border=2)
    assert report["images"][0]["psnr"] == pytest.approx(want, abs=1e-5)


def test_usage_errors_exit_2_with_a_message(tmp_path, capsys):
    weights = _nearest_model(tmp_path / "nn-x4.safetensors")
    _save(tmp_path / "d" / "a.png", _photo(16, 16, 0))
    code = main(["eval", "sr", "--weights", str(weights), "--data", str(tmp_path / "d"), "--scale", "2"])
    assert code == 2 and "upscales x4" in capsys.readouterr().err
    code = main(["eval", "sr", "--weights", "bicubic", "--data", str(tmp_path / "nowhere")])
    assert code == 2 and "not a folder" in capsys.readouterr().err
    keep = _save(tmp_path / "keep.png", _photo(8, 8, 1))
    before = keep.read_bytes()
    code = main(["eval", "sr", "--weights", "bicubic", "--data", str(tmp_path / "d"), "--json", str(keep)])
    assert code == 2 and "not overwriting" in capsys.readouterr().err and keep.read_bytes() == before


def test_identical_output_reports_inf_as_null(tmp_path, capsys):
    # A constant image is reproduced exactly by bicubic: PSNR inf, written as null in the JSON.
    _save(tmp_path / "d" / "flat.png", np.full((24, 24, 3), 77, np.uint8))
    report = _eval(tmp_path, "--weights", "bicubic", "--data", str(tmp_path / "d"))
    assert report["images"][0]["psnr"] is None and report["mean"]["psnr"] is None
    assert report["images"][0]["ssim"] == pytest.approx(1.0)
    assert " inf " in capsys.readouterr().out
    assert math.isfinite(report["images"][0]["ssim"])


def test_record_stores_the_mean_scores_in_the_card(tmp_path):
    from img2img.weights.format import read_card

    weights = _nearest_model(tmp_path / "nn-x4.safetensors")
    _save(tmp_path / "d" / "a.png", _photo(48, 40, 4))
    report = _eval(tmp_path, "--weights", str(weights), "--data", str(tmp_path / "d"), "--record", "mine_x4")
    rec = read_card(weights).metrics["mine_x4"]
    assert rec["psnr_y"] == pytest.approx(report["mean"]["psnr"], abs=1e-4) and rec["images"] == 1
    assert rec["protocol"]["data"] == str(tmp_path / "d")
    assert main(["eval", "sr", "--weights", "bicubic", "--data", str(tmp_path / "d"), "--record", "x"]) == 2


@pytest.mark.slow
@needs_benchmarks
def test_bundled_esrgan_small_scores_what_its_card_says(tmp_path):
    """The shipped demo model, evaluated from scratch, reproduces its card and clearly beats bicubic."""
    weights = Path(__file__).resolve().parents[1] / "weights" / "esrgan-small-x4.safetensors"
    card = json.loads(weights.with_suffix(".json").read_text())
    ours = _eval(tmp_path, "--weights", str(weights), "--data", str(SR / "Set5" / "image_SRF_4"))
    bicubic = _eval(tmp_path, "--weights", "bicubic", "--data", str(SR / "Set5" / "image_SRF_4"))
    assert ours["mean"]["psnr"] == pytest.approx(card["metrics"]["Set5_x4"]["psnr_y"], abs=0.01)
    assert ours["mean"]["psnr"] - bicubic["mean"]["psnr"] > 1.3
