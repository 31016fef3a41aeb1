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
