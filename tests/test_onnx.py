"""ONNX export (`img2img onnx`): the graph runs in onnxruntime with other sizes than it was exported with
and gives the engine's result; the card travels in the file; what cannot be exported is refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.archs import SRVGGNetCompact
from img2img.cli import main
from img2img.infer.model import load
from img2img.io.images import read_image
from img2img.weights.format import Card, save_weights

pytest.importorskip("onnxruntime", reason="ONNX export needs: pip install 'img2img[onnx]'")
from img2img.infer.onnx import PARITY_TOLERANCE, export_onnx, read_onnx_card, run_onnx  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FACADE = REPO / "img2img" / "app" / "examples" / "translate" / "facade_labels.png"


@pytest.fixture(scope="module")
def tiny_x4(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    kwargs = {"nf": 8, "num_conv": 2, "scale": 4}
    card = Card(name="tiny-x4", arch="SRVGGNetCompact", arch_kwargs=kwargs, task="upscale", scale=4)
    return save_weights(tmp_path_factory.mktemp("onnx") / "tiny-x4.safetensors", SRVGGNetCompact(**kwargs), card)


def test_exported_sr_graph_has_dynamic_size_and_matches_the_engine(tiny_x4, tmp_path) -> None:
    model = load(tiny_x4, device="cpu", precision="fp32", tile=0)
    report = export_onnx(model, tmp_path / "x4.onnx")
    assert report.max_abs_diff is not None and report.max_abs_diff <= PARITY_TOLERANCE
    assert read_onnx_card(tmp_path / "x4.onnx")["name"] == "tiny-x4"
    rng = np.random.default_rng(0)
    for h, w in ((23, 41), (70, 18)):  # neither is the probe's size
        img = rng.random((h, w, 3), dtype=np.float32)
        got = run_onnx(tmp_path / "x4.onnx", img.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
        assert got.shape == (4 * h, 4 * w, 3)
        assert np.abs(got - model(img)).max() <= 1e-4


def test_cli_exports_the_bundled_pix2pix_model_on_a_real_label_map(tmp_path, capsys) -> None:
    out = tmp_path / "facades.onnx"
    assert main(["onnx", "pix2pix-facades-small", str(out), "--probe", str(FACADE)]) == 0
    printed = capsys.readouterr().out
    assert "multiples of 128" in printed and "parity: max |onnxruntime - torch|" in printed
    labels = read_image(FACADE).rgb
    model = load("pix2pix-facades-small", device="cpu", precision="fp32")
    got = run_onnx(out, labels.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    assert np.abs(got - model(labels)).max() <= 1e-4  # translate: same size, value range [-1, 1] inside the graph
    before = out.read_bytes()
    assert main(["onnx", "pix2pix-facades-small", str(out)]) == 2  # no silent overwrite
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before


def test_label_models_are_refused_with_the_reason(tiny_labels_model, tmp_path) -> None:
    path, _ = tiny_labels_model
    from img2img.errors import Img2ImgError

    with pytest.raises(Img2ImgError, match="covers image -> image models"):
        export_onnx(load(path, device="cpu"), tmp_path / "l.onnx")
    assert not (tmp_path / "l.onnx").exists()


# --- the onnxruntime engine (`engine="onnxruntime"`, `--engine onnxruntime`) ---

ASTRONAUT = REPO / "examples" / "astronaut.png"


def test_onnxruntime_engine_gives_the_torch_result_and_reuses_its_export(tiny_x4, home) -> None:
    rgb = read_image(ASTRONAUT).rgb[:70, :90]
    grey_alpha = np.dstack([rgb.mean(axis=2), np.linspace(0, 1, 90, dtype=np.float32)[None].repeat(70, 0)])
    for kwargs in ({"tile": 0}, {"tile": 32}, {"tile": 0, "ensemble": True}):
        ours = load(tiny_x4, device="cpu", engine="onnxruntime", **kwargs)
        ref = load(tiny_x4, device="cpu", **kwargs)
        assert ours.describe()["engine"] == "onnxruntime" and ours.precision == "fp32"
        for img in (rgb, grey_alpha):  # grey + alpha runs as a batch of two images
            got, want = ours(img), ref(img)
            assert got.shape == want.shape == (280, 360, img.shape[2])
            assert np.abs(got - want).max() <= 1e-4
    files = sorted((home / "onnx").glob("*.onnx"))
    assert len(files) == 1 and files[0].name.startswith("tiny-x4-")  # one export, reused by every load
    assert read_onnx_card(files[0])["name"] == "tiny-x4"


def test_a_broken_cached_export_is_made_again_and_other_weights_get_their_own(tiny_x4, home, tmp_path) -> None:
    first = load(tiny_x4, device="cpu", engine="onnxruntime")
    cached = first.onnx_path
    cached.write_bytes(b"\x08\x07 not a graph")  # truncated / overwritten file
    again = load(tiny_x4, device="cpu", engine="onnxruntime")
    assert again.onnx_path == cached and any("exported it again" in n for n in again.notes)
    img = read_image(ASTRONAUT).rgb[:40, :40]
    assert np.abs(again(img) - load(tiny_x4, device="cpu")(img)).max() <= 1e-4
    torch.manual_seed(1)  # the same card with other weights must not reuse that graph
    kwargs = {"nf": 8, "num_conv": 2, "scale": 4}
    card = Card(name="tiny-x4", arch="SRVGGNetCompact", arch_kwargs=kwargs, task="upscale", scale=4)
    other = save_weights(tmp_path / "other.safetensors", SRVGGNetCompact(**kwargs), card)
    model = load(other, device="cpu", engine="onnxruntime")
    assert model.onnx_path != cached
    assert np.abs(model(img) - load(other, device="cpu")(img)).max() <= 1e-4


def test_onnxruntime_engine_refuses_what_it_cannot_run(tiny_x4, tiny_labels_model, home) -> None:
    from img2img.errors import Img2ImgError

    for kwargs, match in (
        ({"precision": "bf16"}, "runs fp32"),
        ({"device": "cuda"}, "runs on the CPU"),
        ({"train_mode": True}, "eval-mode graph"),
        ({"engine": "tensorrt"}, "engine must be one of"),
    ):
        with pytest.raises(Img2ImgError, match=match):
            load(tiny_x4, **{"engine": "onnxruntime", **kwargs})
    with pytest.raises(Img2ImgError, match="apply to image models only"):
        load(tiny_labels_model[0], device="cpu", engine="onnxruntime")
    assert not (home / "onnx").exists()  # nothing exported for a refused load
    home.mkdir(parents=True)
    (home / "onnx").write_text("a file where the cache folder should be")
    with pytest.raises(Img2ImgError, match="cannot write the ONNX export"):
        load(tiny_x4, device="cpu", engine="onnxruntime")


def test_upscale_command_with_the_onnxruntime_engine(tiny_x4, home, tmp_path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(ASTRONAUT.read_bytes())
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    argv = ["upscale", str(src), "--weights", str(tiny_x4), "--tile", "96"]
    assert main([*argv[:2], str(tmp_path / "ort"), *argv[2:], "--engine", "onnxruntime"]) == 1  # one bad file
    err = capsys.readouterr().err
    assert "tiny-x4 on cpu, fp32 (auto), onnxruntime" in err and "broken.png" in err
    assert main([*argv[:2], str(tmp_path / "torch"), *argv[2:]]) == 1
    got, want = read_image(tmp_path / "ort" / "a.png").rgb, read_image(tmp_path / "torch" / "a.png").rgb
    assert got.shape == want.shape and np.abs(got - want).max() <= 1 / 255 + 1e-6
