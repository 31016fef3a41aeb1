"""Tiling: padding, the tile grid, feathered blending (tiled == untiled), progress, out-of-memory
detection and the automatic tile size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from img2img.archs import RRDBNet, SRVGGNetCompact
from img2img.infer import tiling
from img2img.infer.model import load
from img2img.weights.format import Card, save_weights


def nearest(scale: int):
    return lambda x: F.interpolate(x, scale_factor=scale, mode="nearest")


def test_pad_reflects_and_replicates_when_too_small() -> None:
    x = torch.arange(10.0).reshape(1, 1, 2, 5)
    p = tiling.pad_to_multiple(x, 4)
    assert p.shape == (1, 1, 4, 8)
    assert p[0, 0, 0, 5:].tolist() == [3.0, 2.0, 1.0]  # reflected along W
    assert p[0, 0, 2:, :5].tolist() == [x[0, 0, 1].tolist()] * 2  # H=2 cannot reflect 2 rows: replicated
    assert tiling.pad_to_multiple(x, 1) is x
    assert tiling.pad_to_multiple(torch.ones(1, 3, 1, 1), 4).shape == (1, 3, 4, 4)


@pytest.mark.parametrize("length, tile", [(100, 32), (33, 32), (7, 32), (96, 48), (1, 1)])
def test_cores_cover_evenly_and_respect_the_tile(length: int, tile: int) -> None:
    cores = tiling.split_cores(length, tile)
    assert cores[0][0] == 0 and cores[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:], strict=False))
    sizes = [e - s for s, e in cores]
    assert max(sizes) <= tile and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("multiple", [1, 2, 4])
@pytest.mark.parametrize("tile", [3, 5, 16])
@pytest.mark.parametrize("overlap", [0, 1, 4])
def test_blend_weights_sum_to_one(multiple: int, tile: int, overlap: int) -> None:
    # A receptive field of one pixel: every tiling must reproduce the untiled result exactly.
    x = torch.rand(2, 3, 23, 18)
    want = nearest(3)(x)
    got = tiling.run_tiled(nearest(3), x, scale=3, tile=tile, overlap=overlap, multiple=multiple)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-6)


def lively_rrdb(scale: int) -> RRDBNet:
    torch.manual_seed(scale)
    net = RRDBNet(nf=8, nb=1, gc=4, scale=scale)
    with torch.no_grad():  # random init gives a nearly flat output; make it vary over [0, 1]
        net.conv_last.weight.mul_(8)
        net.conv_last.bias.fill_(0.5)
    return net


# (net, scale, size multiple, receptive radius in input pixels, tile sizes to try)
CASES = {
    "compact-x4": (lambda: SRVGGNetCompact(nf=8, num_conv=2), 4, 1, 4, [7, 16, 30]),
    "rrdb-x4": (lambda: lively_rrdb(4), 4, 1, 19, [13, 32]),
    "rrdb-x2": (lambda: lively_rrdb(2), 2, 2, 19, [15, 21]),
    "rrdb-x1": (lambda: lively_rrdb(1), 1, 4, 19, [13, 30]),
}


def save(tmp_path: Path, case: str) -> Path:
    make, scale, multiple, radius, _ = CASES[case]
    net = make()
    if case.startswith("compact"):
        arch, kwargs = "SRVGGNetCompact", {"nf": 8, "num_conv": 2}
    else:
        arch, kwargs = "RRDBNet", {"nf": 8, "nb": 1, "gc": 4, "scale": scale}
    card = Card(case, arch, kwargs, "upscale", scale=scale, size_multiple=multiple, receptive_radius=radius)
    return save_weights(tmp_path / f"{case}.safetensors", net, card)


@pytest.mark.parametrize("case", sorted(CASES))
def test_tiled_equals_untiled_when_overlap_covers_the_receptive_field(tmp_path: Path, case: str) -> None:
    m = load(save(tmp_path, case), device="cpu")
    x = torch.rand(1, 3, 61, 45)
    whole = m.run_tensor(x, tile=0)
    assert whole.shape == (1, 3, 61 * m.scale, 45 * m.scale) and whole.std() > 0.05
    for tile in CASES[case][4]:
        tiled = m.run_tensor(x, tile=tile)
        assert (tiled - whole).abs().max() < 1 / 255, f"tile {tile}"


def test_too_little_overlap_shows_seams(tmp_path: Path) -> None:
    # The check above can fail: without context the tiles disagree with the whole image.
    path = save(tmp_path, "rrdb-x2")
    x = torch.rand(1, 3, 40, 40)
    whole = load(path, device="cpu").run_tensor(x, tile=0)
    tiled = load(path, device="cpu", tile_overlap=0).run_tensor(x, tile=16)
    assert (tiled - whole).abs().max() > 1 / 255


def test_progress_counts_tiles(tmp_path: Path) -> None:
    m = load(save(tmp_path, "compact-x4"), device="cpu", tile=16)
    steps: list[tuple[int, int]] = []
    m.run_tensor(torch.rand(1, 3, 64, 40), progress=lambda d, n: steps.append((d, n)))
    assert steps == [(i, 12) for i in range(1, 13)]  # 4 rows x 3 columns
    steps.clear()
    m.run_tensor(torch.rand(1, 3, 10, 10), tile=0, progress=lambda d, n: steps.append((d, n)))
    assert steps == [(1, 1)]


def test_out_of_memory_is_recognised_in_its_forms() -> None:
    assert tiling.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert tiling.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert tiling.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 8 GB"))
    assert not tiling.is_out_of_memory(RuntimeError("Given groups=1, weight of size [8, 3, 3, 3]"))
    assert not tiling.is_out_of_memory(ValueError("out of memory"))


def test_activation_estimate_ranks_the_networks() -> None:
    rrdb, compact = RRDBNet(nb=2), SRVGGNetCompact()  # full width (RRDB's depth does not change the figure)
    per_px_rrdb = tiling.activation_bytes_per_pixel(rrdb, 3, 1, 4)
    per_px_compact = tiling.activation_bytes_per_pixel(compact, 3, 1, 4)
    # RRDB's widest tensors (64 channels at 4x resolution) run in strips of bounded size on large inputs,
    # so its figure is the body's: on the CPU in fp32 its Winograd buffers (36/16 (nf + 4 gc) transformed
    # values, two scratch maps, the block's maps: 1008 per pixel for 64 / 32) ...
    assert per_px_rrdb == 4 * 1008
    # ... and with direct convolutions a dense block's live tensors: 5 x 64 + 8 x 32 channels.
    rrdb.winograd = False
    assert tiling.activation_bytes_per_pixel(rrdb, 3, 1, 4) == 4 * (5 * 64 + 8 * 32)
    rrdb.winograd = True
    # bf16 / fp16 forwards run the direct convolutions, so their figure is the direct one.
    for half in (torch.bfloat16, torch.float16):
        assert tiling.activation_bytes_per_pixel(rrdb, 3, 1, 4, half) == 4 * (5 * 64 + 8 * 32)
    assert per_px_compact == tiling.ACTIVATION_FACTOR * 4 * 64
    assert tiling.activation_bytes_per_pixel(compact, 3, 1, 2) == per_px_compact / 2
    with torch.device("meta"):  # a network without weights gets a shape-only pass (direct: not on the CPU)
        assert tiling.activation_bytes_per_pixel(RRDBNet(nb=1), 3, 1, 4) == 4 * (5 * 64 + 8 * 32)
    # The bound that runs nothing is never below the measured figure.
    assert tiling.activation_bytes_bound(rrdb, 3, 4, 4) >= per_px_rrdb
    assert tiling.activation_bytes_bound(compact, 3, 4, 4) >= per_px_compact


def test_small_images_skip_the_measuring_pass(monkeypatch) -> None:
    from img2img.infer.image import ImageModel

    kwargs = {"nf": 8, "num_conv": 2, "scale": 4}
    card = Card(name="c", arch="SRVGGNetCompact", arch_kwargs=kwargs, task="upscale", scale=4)
    model = ImageModel(card, SRVGGNetCompact(**kwargs), device="cpu")
    calls = []
    real = tiling.activation_bytes_per_pixel
    monkeypatch.setattr(tiling, "activation_bytes_per_pixel", lambda *a: calls.append(a) or real(*a))
    assert model._pick_tile(1, 64, 64, None) == 0 and not calls  # fits under the bound: nothing measured
    assert 32 <= model._pick_tile(1, 20000, 20000, None) <= 512 and len(calls) == 1  # too big: measured once
    assert model._pick_tile(1, 20000, 20000, None) > 0 and len(calls) == 1


def test_bf16_tiles_are_sized_for_the_direct_body() -> None:
    """A wide RRDB model gets larger automatic tiles in bf16 (direct convolutions) than in fp32, whose
    Winograd body holds more per pixel."""
    from img2img.infer.image import ImageModel

    kwargs = {"nf": 64, "nb": 1, "gc": 32, "scale": 4}
    card = Card(name="r", arch="RRDBNet", arch_kwargs=kwargs, task="upscale", scale=4)
    tiles = {}
    for precision in ("fp32", "bf16"):
        model = ImageModel(card, RRDBNet(**kwargs), device="cpu", precision=precision)
        tiles[precision] = model._pick_tile(1, 3000, 3000, None, lean=True)
    assert 0 < tiles["fp32"] < tiles["bf16"]


def test_auto_tile_size() -> None:
    budget = 4 << 30
    kw = dict(budget=budget, cap=512, overlap=16)
    compact, rrdb = tiling.ACTIVATION_FACTOR * 4 * 64, tiling.ACTIVATION_FACTOR * 4 * 1024
    assert tiling.auto_tile_size(300, 200, bytes_per_pixel=compact, **kw) == 0  # small: whole image
    assert tiling.auto_tile_size(3000, 2000, bytes_per_pixel=compact, **kw) == 512
    t = tiling.auto_tile_size(3000, 2000, bytes_per_pixel=rrdb, **kw)
    assert 128 <= t < 512 and t % 8 == 0
    assert (t + 2 * 24) ** 2 * rrdb <= budget  # the padded tile fits the budget
    assert tiling.auto_tile_size(3000, 2000, bytes_per_pixel=rrdb, budget=1 << 20, cap=512, overlap=16) == 32
    assert tiling.auto_tile_size(3000, 2000, bytes_per_pixel=rrdb, multiple=16, **kw) % 16 == 0


def test_cpu_budget_is_bounded() -> None:
    budget, cap = tiling.memory_budget(torch.device("cpu"))
    assert 0 < budget <= tiling.CPU_BUDGET_CAP and cap == tiling.CPU_TILE_CAP
    assert tiling.available_system_memory() > 0


def test_automatic_tile_on_cpu(tmp_path: Path) -> None:
    m = load(save(tmp_path, "compact-x4"), device="cpu")
    assert m._auto_tile(1, 100, 80) == 0
    assert m._auto_tile(1, 5000, 300) == 512
    x = torch.rand(1, 3, 40, 30)
    assert torch.equal(m.run_tensor(x), m.run_tensor(x, tile=0))


@pytest.mark.parametrize("tile", [0, 9, 16, 23])
def test_finished_blocks_cover_every_output_pixel_once_and_match_the_whole(tile: int) -> None:
    """With a sink, run_tiled hands over the result in blocks, each pixel exactly once, equal to the
    accumulated output (here an exact x2 nearest upscale, so any blending slip shows)."""
    x = torch.rand(2, 3, 37, 52)
    forward = nearest(2)
    want = forward(x)
    got = torch.full_like(want, float("nan"))
    seen = torch.zeros(want.shape[-2:], dtype=torch.int32)

    def sink(r0: int, r1: int, c0: int, c1: int, block: torch.Tensor) -> None:
        got[:, :, r0:r1, c0:c1] = block
        seen[r0:r1, c0:c1] += 1

    assert tiling.run_tiled(forward, x, scale=2, tile=tile, overlap=5, multiple=2, sink=sink) is None
    assert bool((seen == 1).all())
    assert (got - want).abs().max() < 1e-6
    assert (tiling.run_tiled(forward, x, scale=2, tile=tile, overlap=5, multiple=2) - want).abs().max() < 1e-6


@pytest.mark.parametrize("case", ["compact-x4", "rrdb-x2"])
def test_quantised_output_is_the_rounded_float_output(tmp_path: Path, case: str) -> None:
    """model(img, dtype=uint8 | uint16), made band by band, gives the float result rounded: RGB, grey,
    RGBA with alpha through the model, tiled and whole."""
    import numpy as np

    path = save(tmp_path, case)
    rng = np.random.default_rng(0)
    rgba = rng.random((41, 30, 4), dtype=np.float32)
    for tile in (0, 13):
        m = load(path, device="cpu", tile=tile)
        for img, mode in ((rgba[..., :3], "model"), (rgba[..., 0], "model"), (rgba, "model"), (rgba, "none")):
            ref = m(img, alpha_mode=mode)
            for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
                got = m(img, alpha_mode=mode, dtype=dtype)
                assert got.dtype == dtype and got.shape == ref.shape
                assert np.abs(got.astype(np.int64) - np.rint(ref * top)).max() <= 1


def test_large_quantised_outputs_get_tiles_chosen_for_memory() -> None:
    """A 2000 x 1500 x4 upscale made in uint8 bands uses smaller tiles than the float result would, and never
    smaller than LEAN_MIN_TILE; small outputs keep the fast choice."""
    m = load("realesr-animevideov3", device="cpu")
    lean, normal = m._pick_tile(1, 1500, 2000, None, True), m._pick_tile(1, 1500, 2000, None, False)
    assert tiling.LEAN_MIN_TILE <= lean < normal
    assert m._pick_tile(1, 300, 200, None, True) == m._pick_tile(1, 300, 200, None, False)


@pytest.mark.parametrize("scale, size", [(4, (1, 3, 37, 21)), (8, (2, 3, 19, 13)), (2, (1, 3, 42, 30))])
def test_rrdbnet_tail_in_strips_gives_the_whole_tail_result(monkeypatch, scale: int, size: tuple) -> None:
    """On a large input the upsampling tail runs in row strips (bounded memory); the output is the
    whole tail's, for every scale (x2 unshuffles, x8 has a third upsampling), odd sizes and batches."""
    import img2img.archs.rrdbnet as rrdbnet

    torch.manual_seed(0)
    net = RRDBNet(nf=8, nb=1, gc=4, scale=scale).eval()
    x = torch.rand(*size)
    calls: list[int] = []
    net.conv_last.register_forward_hook(lambda _m, _i, o: calls.append(o.shape[2]))
    with torch.inference_mode():
        whole = net(x)
        assert len(calls) == 1
        monkeypatch.setattr(rrdbnet, "TAIL_WHOLE_BYTES", 0)
        monkeypatch.setattr(rrdbnet, "TAIL_STRIP_BYTES", 1)  # every strip at its minimum of TAIL_MIN_ROWS rows
        calls.clear()
        strips = net(x.contiguous(memory_format=torch.channels_last))
    body_rows = size[2] // {2: 2}.get(scale, 1)
    assert len(calls) == -(-body_rows // rrdbnet.TAIL_MIN_ROWS) > 1
    assert strips.shape == whole.shape == (size[0], 3, size[2] * scale, size[3] * scale)
    torch.testing.assert_close(strips, whole, rtol=0, atol=1e-6)


def test_lean_tiles_keep_a_whole_rrdb_tail_within_their_budget() -> None:
    """A tail below TAIL_WHOLE_BYTES runs whole, holding ~3.4x its widest tensor, which the tiler's
    per-pixel figure does not count: when tiles are sized for a small peak (a large banded output), the
    RRDB tail runs in strips unless its whole peak fits the tile budget; a small image gets the default."""
    import img2img.archs.rrdbnet as rrdbnet
    from img2img.infer.image import ImageModel

    kwargs = {"nf": 32, "nb": 1, "gc": 16, "scale": 4}
    card = Card(name="r", arch="RRDBNet", arch_kwargs=kwargs, task="upscale", scale=4)
    net = RRDBNet(**kwargs)
    model = ImageModel(card, net, device="cpu", precision="fp32")
    assert model._pick_tile(1, 3000, 2000, None, lean=True) > 0
    budget = tiling.lean_budget(1, 12000, 8000, 3)
    assert net.tail_whole_bytes == int(budget / rrdbnet.TAIL_LIVE) < rrdbnet.TAIL_WHOLE_BYTES
    model._pick_tile(1, 3000, 2000, None, lean=False)
    assert net.tail_whole_bytes is None
    model._pick_tile(1, 3000, 2000, None, lean=True)
    model._pick_tile(1, 60, 40, None, lean=True)  # small output: not lean, the default again
    assert net.tail_whole_bytes is None
    # A 150x150 body: its widest tail tensor (32 x 600 x 600 floats) is 46 MB, under the default
    # threshold (whole) and over the lean one (27 MB: strips); either way the same result.
    calls: list[int] = []
    net.conv_last.register_forward_hook(lambda _m, _i, o: calls.append(o.shape[2]))
    x = torch.rand(1, 3, 150, 150)
    with torch.inference_mode():
        whole = net.eval()(x)
        net.limit_tail_memory(budget)
        strips = net(x)
    assert calls[0] == 600 and len(calls) > 2
    torch.testing.assert_close(strips, whole, rtol=0, atol=1e-6)


def test_rrdbnet_tail_runs_whole_when_training(monkeypatch) -> None:
    import img2img.archs.rrdbnet as rrdbnet

    monkeypatch.setattr(rrdbnet, "TAIL_WHOLE_BYTES", 0)
    net = RRDBNet(nf=8, nb=1, gc=4).train()
    calls: list[int] = []
    net.conv_last.register_forward_hook(lambda _m, _i, o: calls.append(o.shape[2]))
    net(torch.rand(1, 3, 24, 24)).mean().backward()
    assert calls == [96] and net.conv_first.weight.grad is not None
