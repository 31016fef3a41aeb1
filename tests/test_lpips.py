"""LPIPS (AlexNet, v0.1): our network gives the lpips package's values on the same weights (a random backbone,
no download), and `eval translate / synthesize --lpips` report it, or refuse when the weight files are absent."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.cli import main
from img2img.eval.lpips import BACKBONE_FILE, LINEAR_FILE, LPIPSAlex, find_weights, image_distance, load_lpips
from img2img.infer.model import load

lpips = pytest.importorskip("lpips", reason="the lpips package is the reference (pip install lpips, [dev])")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[torch.nn.Module, Path, Path]:
    """lpips' AlexNet LPIPS with a random backbone and its released linear layers, and those weights as the
    two files we read: the backbone in torchvision's layout (`features.N.*`, plus a classifier key to ignore)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():  # lpips asks torchvision with its deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    sd = {}
    for key, value in ref.net.state_dict().items():  # slice{k}.{N}.weight keeps torchvision's index N
        _, index, name = key.split(".")
        sd[f"features.{index}.{name}"] = value.clone()
    sd["classifier.6.bias"] = torch.zeros(1000)
    folder = tmp_path_factory.mktemp("lpips")
    backbone, linear = folder / BACKBONE_FILE, folder / LINEAR_FILE
    torch.save(sd, backbone)
    linear.write_bytes((Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth").read_bytes())
    return ref, backbone, linear


def test_values_equal_the_lpips_package(reference) -> None:
    ref, backbone, linear = reference
    net, info = load_lpips(backbone, linear)
    assert isinstance(net, LPIPSAlex) and not info.published  # the backbone is random, not the released one
    assert info.linear_sha256.startswith("df73285e")
    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand(3, 3, 64, 96, generator=g) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        want = ref(x, y).flatten()
        got = net(x, y)
    assert got.shape == (3,) and torch.all(want > 0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with torch.no_grad():
        assert torch.all(net(x, x) == 0)  # identical images
    a = np.random.default_rng(2).random((40, 48, 3))
    assert image_distance(net, a, a) == 0.0
    with pytest.raises(Exception, match="at least 31x31"):
        image_distance(net, a[:20], a[:20])


def test_wrong_or_missing_files_are_refused(reference, tmp_path, monkeypatch) -> None:
    _, backbone, linear = reference
    with pytest.raises(Exception, match="not the torchvision AlexNet"):
        load_lpips(linear, linear)
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path))
    with pytest.raises(Exception, match=BACKBONE_FILE):
        find_weights(None, linear)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / BACKBONE_FILE).write_bytes(backbone.read_bytes())
    (tmp_path / "weights" / LINEAR_FILE).write_bytes(linear.read_bytes())
    assert find_weights() == (tmp_path / "weights" / BACKBONE_FILE, tmp_path / "weights" / LINEAR_FILE)


def _facades(root: Path, n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """n side-by-side A|B pairs of 128 x 128 halves; returns (A, B) in [0, 1] as the PNGs hold them."""
    rng = np.random.default_rng(0)
    root.mkdir()
    pairs = []
    for i in range(n):
        a, b = (rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(2))
        Image.fromarray(np.concatenate([a, b], 1)).save(root / f"{i}.png")
        pairs.append((a / 255.0, b / 255.0))
    return pairs


def _ref_lpips(ref, out: np.ndarray, target: np.ndarray) -> float:
    to = [torch.from_numpy(np.round(np.clip(v, 0, 1) * 255) / 127.5 - 1).float().permute(2, 0, 1)[None]
          for v in (out, target)]  # fmt: skip
    with torch.no_grad():
        return float(ref(*to))


def test_eval_translate_lpips(reference, tmp_path, capsys, monkeypatch) -> None:
    ref, backbone, linear = reference
    pairs = _facades(tmp_path / "val")
    report = tmp_path / "r.json"
    flags = ["--lpips", "--lpips-backbone", str(backbone), "--lpips-linear", str(linear), "--json", str(report)]
    args = [
        "eval",
        "translate",
        "--weights",
        "pix2pix-facades-small",
        "--data",
        str(tmp_path / "val"),
        "--device",
        "cpu",
    ]
    assert main(args + flags) == 0
    out = capsys.readouterr().out
    assert "LPIPS" in out and "not the released weights" in out
    got = json.loads(report.read_text())
    model = load("pix2pix-facades-small", device="cpu", precision="fp32")  # as eval runs; BtoA: B in, A target
    want = [_ref_lpips(ref, model(b), a) for a, b in pairs]
    assert [row["lpips"] for row in got["images"]] == pytest.approx(want, abs=1e-5)
    assert got["mean"]["lpips"] == pytest.approx(np.mean(want), abs=1e-5) and got["mean"]["lpips"] > 0
    assert got["lpips_weights"]["net"] == "alex" and got["lpips_weights"]["published"] is False

    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "empty"))  # no files anywhere: refused, naming both
    refused = ["eval", "translate", "--weights", "pix2pix-facades-small", "--data", str(tmp_path / "val"), "--lpips"]
    assert main(refused) == 2
    err = capsys.readouterr().err
    assert BACKBONE_FILE in err and LINEAR_FILE in err and "--lpips-backbone" in err and "never downloaded" in err
    assert "Traceback" not in err


def test_eval_synthesize_lpips(reference, tiny_labels_model, tmp_path, capsys) -> None:
    from img2img.io.labels import colourise

    ref, backbone, linear = reference
    path, _ = tiny_labels_model
    model = load(path, device="cpu")
    (tmp_path / "val").mkdir()
    rng = np.random.default_rng(0)
    want = []
    for i in range(2):
        ids = np.zeros((32, 32), np.int64)
        ids[16:] = 1
        photo8 = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([photo8, colourise(ids, model.spec.palette)], 1)).save(
            tmp_path / "val" / f"{i}.png"
        )
        want.append(_ref_lpips(ref, model(ids, seed=0), photo8 / 255.0))
    report = tmp_path / "s.json"
    args = ["eval", "synthesize", "--weights", str(path), "--data", str(tmp_path / "val"), "--device", "cpu",
            "--lpips-backbone", str(backbone), "--lpips-linear", str(linear), "--json", str(report)]  # fmt: skip
    assert main(args) == 0  # a weights flag implies --lpips
    assert "LPIPS" in capsys.readouterr().out
    got = json.loads(report.read_text())
    assert [row["lpips"] for row in got["images"]] == pytest.approx(want, abs=1e-5)
    assert "LPIPS AlexNet v0.1" in got["protocol"]
