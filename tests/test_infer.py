"""The inference engine end to end on tiny random networks: loading, image layouts, value ranges,
alpha, outscale, precision, devices, limits, out-of-memory recovery, and the import layering."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import img2img
from img2img.archs import RRDBNet, SRVGGNetCompact
from img2img.errors import ImageError, ImageTooLargeError, Img2ImgError, WeightsError
from img2img.infer.model import Model, TileForward, load
from img2img.weights.format import Card, load_network, save_weights

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def save_compact(path: Path, *, in_ch: int = 3, out_ch: int = 3, scale: int = 4, **card_kw) -> Path:
    torch.manual_seed(0)
    kw = dict(in_ch=in_ch, out_ch=out_ch, nf=8, num_conv=2, scale=scale)
    card = Card("tiny-compact", "SRVGGNetCompact", kw, "upscale", scale=scale, in_channels=in_ch,
                out_channels=out_ch, receptive_radius=4, **card_kw)  # fmt: skip
    return save_weights(path, SRVGGNetCompact(**kw), card)


def save_rrdb(path: Path, scale: int = 1) -> Path:
    torch.manual_seed(1)
    kw = dict(nf=8, nb=1, gc=4, scale=scale)
    net = RRDBNet(**kw)
    with torch.no_grad():  # random init gives a nearly flat output; make it vary over [0, 1]
        net.conv_last.weight.mul_(8)
        net.conv_last.bias.fill_(0.5)
    card = Card("tiny-rrdb", "RRDBNet", kw, "upscale", scale=scale, size_multiple={1: 4, 2: 2}.get(scale, 1),
                receptive_radius=20)  # fmt: skip
    return save_weights(path, net, card)


def save_kind(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.safetensors"
    return save_compact(path) if kind == "compact" else save_rrdb(path, int(kind[-1]))


@pytest.fixture
def compact(tmp_path: Path) -> Path:
    return save_compact(tmp_path / "compact.safetensors")


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def test_load_resolves_and_describes(compact: Path) -> None:
    m = load(compact, device="cpu")
    assert (m.task, m.scale, m.in_channels, m.out_channels, m.size_multiple) == ("upscale", 4, 3, 3, 1)
    assert m.device == CPU and m.precision == "fp32" and m.tile is None and m.tile_overlap == 4
    assert m.max_output_pixels == 512_000_000
    d = m.describe()
    assert d["name"] == "tiny-compact" and d["params"] == sum(p.numel() for p in m.net.parameters())
    assert {"task", "scale", "device", "precision", "tile", "params"} <= set(d)
    assert not m.net.training
    # Loading twice gives independent models (no shared cache).
    m2 = img2img.load(str(compact), device="auto", tile=8, tile_overlap=2)
    assert m2 is not m and m2.net is not m.net and (m2.tile, m2.tile_overlap, m.tile) == (8, 2, None)


@pytest.mark.parametrize("kind", ["compact", "rrdb1"])
@pytest.mark.parametrize("hw", [(1, 1), (3, 7), (17, 10)])
@pytest.mark.parametrize("layout", ["HW", "HW1", "HW2", "HW3", "HW4"])
def test_any_size_and_layout_round_trips(tmp_path: Path, kind: str, hw: tuple, layout: str) -> None:
    m = load(save_kind(tmp_path, kind), device="cpu")
    shape = hw if layout == "HW" else (*hw, int(layout[-1]))
    out = m(rand(*shape))
    s = m.scale
    assert out.shape == (hw[0] * s, hw[1] * s, *shape[2:])
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_value_range_is_mapped_in_and_out(tmp_path: Path) -> None:
    path = save_compact(tmp_path / "m.safetensors", value_range=(-1, 1))
    net, _ = load_network(path)
    x = torch.from_numpy(rand(1, 3, 9, 11))
    with torch.no_grad():
        want = ((net(x * 2 - 1) + 1) / 2).clamp(0, 1)
    got = load(path, device="cpu").run_tensor(x)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(((net(x) + 1) / 2).clamp(0, 1), want, atol=1e-3)  # the mapping matters


def test_run_tensor_returns_plain_cpu_float32(compact: Path) -> None:
    y = load(compact, device="cpu").run_tensor(torch.rand(2, 3, 5, 6, dtype=torch.float64))
    assert y.shape == (2, 3, 20, 24) and y.dtype == torch.float32 and y.device == CPU
    y.add_(0)  # usable outside inference mode (not an inference tensor)
    with pytest.raises(ImageError, match="3 x H x W"):
        load(compact, device="cpu").run_tensor(torch.rand(1, 1, 5, 6))


def test_grey_through_rgb_model_comes_back_as_luma(compact: Path) -> None:
    m = load(compact, device="cpu")
    grey = rand(9, 8)
    rgb_out = m(np.repeat(grey[..., None], 3, axis=2))
    want = rgb_out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert np.allclose(m(grey), want, atol=1e-5)


def test_rgb_through_grey_model_runs_each_channel(tmp_path: Path) -> None:
    m = load(save_compact(tmp_path / "g.safetensors", in_ch=1, out_ch=1), device="cpu")
    rgb = rand(6, 5, 3)
    out = m(rgb)
    assert out.shape == (24, 20, 3)
    for c in range(3):
        assert np.allclose(out[..., c], m(rgb[..., c]), atol=1e-6)


def blur_upscaler(path: Path) -> Path:
    """A linear x2 upscaler (3x3 box blur, then nearest): mixes neighbouring colours at edges."""
    net = SRVGGNetCompact(nf=6, num_conv=0, scale=2)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        first, act, last = net.body
        act.weight.fill_(1.0)  # PReLU slope 1: the identity
        for c in range(3):
            first.weight[c, c] = 1 / 9  # feature c = blur of channel c
            first.weight[3 + c, c, 1, 1] = 1  # feature 3+c = channel c
            last.weight[4 * c : 4 * c + 4, c, 1, 1] = 1
            last.weight[4 * c : 4 * c + 4, 3 + c, 1, 1] = -1  # residual adds back nearest(x)
    card = Card("blur", "SRVGGNetCompact", dict(nf=6, num_conv=0, scale=2), "upscale", scale=2)
    return save_weights(path, net, card)


def test_alpha_premultiplied_so_hidden_colour_does_not_leak(tmp_path: Path) -> None:
    m = load(blur_upscaler(tmp_path / "b.safetensors"), device="cpu")
    img = np.zeros((16, 16, 4), np.float32)
    img[..., 1] = 1.0  # garbage green under alpha = 0
    img[5:11, 5:11] = (1, 0, 0, 1)  # an opaque red square
    out = m(img)
    a = out[..., 3]
    edge = (a > 0.02) & (a < 0.98)
    assert edge.sum() > 20 and a[12:20, 12:20].min() > 0.99 and a[:4, :4].max() < 1e-6
    visible = out[a > 0.02][:, :3]
    assert np.abs(visible - [1, 0, 0]).max() < 1 / 255
    # Without premultiplication the same network bleeds the hidden green into the edge.
    raw = m.run_tensor(torch.from_numpy(img[..., :3]).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert raw[edge][:, 1].max() > 0.1


def test_alpha_modes(compact: Path) -> None:
    m = load(compact, device="cpu")
    img = rand(10, 12, 4)
    img[..., 3] = 0.5 + 0.5 * img[..., 3]
    assert m(img, alpha_mode="none").shape == (40, 48, 3)
    want = np.clip(cv2.resize(img[..., 3].copy(), (48, 40), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.allclose(m(img, alpha_mode="bicubic")[..., 3], want, atol=1e-6)
    alpha_rgb = torch.from_numpy(np.repeat(img[..., 3:], 3, axis=2)).permute(2, 0, 1)[None]
    want = m.run_tensor(alpha_rgb)[0].mean(0).numpy()
    assert np.allclose(m(img, alpha_mode="model")[..., 3], want, atol=1e-6)
    grey_alpha = m(img[..., [0, 3]])
    assert grey_alpha.shape == (40, 48, 2) and np.allclose(grey_alpha[..., 1], want, atol=1e-6)
    with pytest.raises(Img2ImgError, match="alpha_mode"):
        m(img, alpha_mode="keep")


def test_outscale_resizes_the_network_output(compact: Path) -> None:
    m = load(compact, device="cpu")
    img = rand(10, 7, 3)
    full = m(img)
    small = m(img, outscale=2)
    assert small.shape == (20, 14, 3)
    assert np.allclose(small, cv2.resize(full, (14, 20), interpolation=cv2.INTER_AREA), atol=1e-6)
    big = m(img, outscale=5.5)
    assert big.shape == (55, 38, 3) and big.min() >= 0 and big.max() <= 1
    lanczos = cv2.resize(full, (38, 55), interpolation=cv2.INTER_LANCZOS4)
    assert np.allclose(big, np.clip(lanczos, 0, 1), atol=1e-6)
    with pytest.raises(Img2ImgError, match="outscale"):
        m(img, outscale=0)


@pytest.mark.parametrize("kind", ["compact", "rrdb4"])
def test_bf16_close_to_fp32(tmp_path: Path, kind: str) -> None:
    path = save_kind(tmp_path, kind)
    img = rand(24, 20, 3)
    fp32 = load(path, device="cpu", precision="fp32")(img)
    bf16 = load(path, device="cpu", precision="bfloat16")
    assert bf16.precision == "bf16"
    out = bf16(img)
    assert 30 < psnr(out, fp32) < 200  # close, but really computed in bf16


def test_fp16_overflow_reruns_in_fp32() -> None:
    torch.manual_seed(0)
    net = SRVGGNetCompact(nf=8, num_conv=2).eval()
    with torch.no_grad():  # huge then tiny weights: fine in fp32, Inf in fp16
        net.body[0].weight.mul_(1e6)
        net.body[0].bias.mul_(1e6)
        net.body[2].weight.mul_(1e-6)
    x = torch.rand(1, 3, 12, 10)
    ref = TileForward(copy.deepcopy(net), CPU, "fp32", (0, 1))(x)
    fw = TileForward(copy.deepcopy(net), CPU, "fp16", (0, 1))
    assert not torch.isfinite(fw.net(x.half().contiguous(memory_format=torch.channels_last))).all()
    out = fw(x)
    assert fw.fallback_tiles == 1 and "fp32" in fw.notes[0]
    assert torch.allclose(out, ref, atol=1e-6)
    fw(x)
    assert fw.fallback_tiles == 2 and len(fw.notes) == 1


def test_fp16_without_overflow_stays_fp16(compact: Path) -> None:
    net, _ = load_network(compact)
    x = torch.rand(1, 3, 12, 10)
    fw = TileForward(net, CPU, "fp16", (0, 1))
    out = fw(x)
    ref = TileForward(load_network(compact)[0], CPU, "fp32", (0, 1))(x)
    assert fw.fallback_tiles == 0 and 1e-6 < (out - ref).abs().max() < 1e-2


def test_device_and_precision_errors(compact: Path) -> None:
    with pytest.raises(Img2ImgError, match="bf16"):
        load(compact, device="cpu", precision="fp16")
    with pytest.raises(Img2ImgError, match="precision"):
        load(compact, device="cpu", precision="int8")
    with pytest.raises(Img2ImgError, match="device"):
        load(compact, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(Img2ImgError, match="CUDA is not available"):
            load(compact, device="cuda:0")
    with pytest.raises(Img2ImgError, match="tile"):
        load(compact, device="cpu", tile=-1)


def test_missing_weights_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError):
        load(tmp_path / "missing.safetensors", device="cpu")


def test_too_large_output_fails_before_any_work(compact: Path) -> None:
    m = load(compact, device="cpu", max_output_pixels=100 * 100)
    calls = []
    forward = m.net.forward
    m.net.forward = lambda x: calls.append(x.shape) or forward(x)
    assert m(rand(25, 25)).shape == (100, 100)
    calls.clear()
    with pytest.raises(ImageTooLargeError, match=r"104x104.*max_output_pixels"):
        m(rand(26, 26))
    with pytest.raises(ImageTooLargeError):
        m(rand(20, 20), outscale=6)  # the final size counts too
    with pytest.raises(ImageTooLargeError):
        m.run_tensor(torch.rand(1, 3, 30, 30))
    assert calls == []


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((4, 4, 3), np.int32), "int32"),
        (np.ones((4, 4, 3), np.float32) * 255, r"\[0, 1\]"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.zeros((4, 4, 5), np.float32), "C in 1-4"),
        (np.zeros((0, 4, 3), np.float32), "C in 1-4"),
        ([[0.5]], "numpy"),
    ],
)
def test_bad_images_raise_image_error(compact: Path, bad, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        load(compact, device="cpu")(bad)


@pytest.mark.parametrize("tile", [0, 8])
def test_integer_samples_give_the_float_result(compact: Path, tile: int) -> None:
    """uint8 (and uint16) samples are the same image as floats / 255 (/ 65535): the same output, banded
    into 8-bit samples or as floats, whole or tiled (uint8 tiles become float one at a time)."""
    m = load(compact, device="cpu", tile=tile)
    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)
    as_float = u8.astype(np.float32) / 255
    np.testing.assert_array_equal(m(u8, dtype=np.uint8), m(as_float, dtype=np.uint8))
    np.testing.assert_array_equal(m(u8), m(as_float))
    np.testing.assert_array_equal(m(u8, outscale=2.5), m(as_float, outscale=2.5))
    u16 = u8.astype(np.uint16) * 257
    np.testing.assert_allclose(m(u16), m(as_float), atol=1e-6)
    grey = u8[..., 0]  # grey into an RGB model goes through the float path
    np.testing.assert_array_equal(m(grey, dtype=np.uint8), m(as_float[..., 0], dtype=np.uint8))


def test_cpu_runs_channels_last_with_the_same_result(compact: Path) -> None:
    m = load(compact, device="cpu")
    assert m.net.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    ref, _ = load_network(compact)
    x = torch.rand(1, 3, 13, 9)
    with torch.no_grad():
        want = ref(x).clamp(0, 1)
    assert torch.allclose(m.run_tensor(x, tile=0), want, atol=1e-5)


def test_ensemble_is_the_mean_of_the_eight_flips_and_transposes(compact: Path) -> None:
    from img2img.infer.model import dihedral, undo_dihedral

    ref, _ = load_network(compact)
    x = torch.rand(1, 3, 13, 9)  # not square: the transposed passes run 9 x 13
    with torch.no_grad():
        want = torch.stack([undo_dihedral(ref(dihedral(x, k)), k) for k in range(8)]).mean(0).clamp(0, 1)
        plain = ref(x).clamp(0, 1)
    m = load(compact, device="cpu", ensemble=True)
    got = m.run_tensor(x, tile=0)
    assert got.shape == plain.shape and torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # a random net is not flip-equivariant
    assert m.describe()["ensemble"] is True and load(compact, device="cpu").describe()["ensemble"] is False
    # Tiled, each tile is ensembled on its own and the blend still matches the whole image.
    y = torch.rand(1, 3, 40, 36)
    assert (m.run_tensor(y, tile=16) - m.run_tensor(y, tile=0)).abs().max() <= 1 / 255


def test_undo_dihedral_inverts_every_transform() -> None:
    from img2img.infer.model import dihedral, undo_dihedral

    x = torch.rand(2, 3, 5, 7)
    outs = [dihedral(x, k) for k in range(8)]
    assert all(torch.equal(undo_dihedral(o, k), x) for k, o in enumerate(outs))
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8  # eight different views


def failing_above(m: Model, pixels: int, error: Exception) -> list[tuple]:
    """Make the network raise `error` for inputs larger than `pixels`; returns the shapes it ran."""
    ran: list[tuple] = []
    forward = m.net.forward

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] > pixels:
            raise error
        ran.append(tuple(x.shape[-2:]))
        return forward(x)

    m.net.forward = wrapped
    return ran


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
    ],
)
def test_out_of_memory_halves_the_tile_and_matches_untiled(compact: Path, error: Exception) -> None:
    img = rand(96, 80, 3)
    want = load(compact, device="cpu", tile=0)(img)
    m = load(compact, device="cpu", tile=0)
    ran = failing_above(m, 45 * 45, error)
    steps = []
    out = m(img, progress=lambda d, n: steps.append((d, n)))
    assert np.abs(out - want).max() < 1 / 255
    assert len(m.notes) == 2 and "retried with tile 32" in m.notes[-1]  # 96 -> 48 -> 32
    assert steps[-1] == (9, 9) and max(h * w for h, w in ran) <= 45 * 45
    ran.clear()
    m(img)  # later images start at the reduced tile: no new failures
    assert len(m.notes) == 2 and len(ran) == 9


def test_out_of_memory_at_the_smallest_tile_gives_up_clearly(compact: Path) -> None:
    m = load(compact, device="cpu")
    failing_above(m, 0, torch.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(Img2ImgError, match="out of memory .* 32px tiles"):
        m(rand(70, 70, 3))


def test_other_runtime_errors_are_not_retried(compact: Path) -> None:
    m = load(compact, device="cpu")
    ran = failing_above(m, 0, RuntimeError("cuDNN error: CUDNN_STATUS_BAD_PARAM"))
    with pytest.raises(RuntimeError, match="CUDNN_STATUS_BAD_PARAM"):
        m(rand(20, 20, 3))
    assert ran == [] and m.notes == []


def test_inference_imports_no_training_code() -> None:
    training = ("img2img.train", "img2img.recipes", "img2img.losses", "img2img.data", "img2img.config")
    code = (
        "import sys, img2img, img2img.infer.model, img2img.cli\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({training!r}))\n"
        "print(' '.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"inference pulled in training modules: {res.stdout}"


def test_broken_weights_are_reported_not_passed_on(tmp_path: Path) -> None:
    net = SRVGGNetCompact(nf=8, num_conv=2)
    with torch.no_grad():
        net.body[0].bias.fill_(float("nan"))
    card = Card("broken", "SRVGGNetCompact", dict(nf=8, num_conv=2), "upscale", scale=4)
    m = load(save_weights(tmp_path / "b.safetensors", net, card), device="cpu")
    with pytest.raises(WeightsError, match="NaN"):
        m(rand(6, 6, 3))
