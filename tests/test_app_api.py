"""The web app through its HTTP API, as a client on the internet would use it: a tiny random upscale model
in a temporary catalog, the app served in-process on a free loopback port, and `gradio_client`/`httpx`."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402

from img2img import infer  # noqa: E402
from img2img.archs import SRVGGNetCompact  # noqa: E402
from img2img.cli import build_parser  # noqa: E402
from img2img.cli import main as cli_main  # noqa: E402
from img2img.io.images import read_image, write_image  # noqa: E402
from img2img.weights.format import Card, save_weights  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "img2img" / "app" / "examples"
MAX_PIXELS = 300_000
MAX_FILE_MB = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_tiny_model(home: Path, name: str = "tiny-x4", task: str = "upscale", scale: int = 4, **extra) -> Path:
    """A small random SRVGGNetCompact saved where the catalog lists user weights."""
    import torch

    torch.manual_seed(0)
    kwargs = {"nf": 8, "num_conv": 2, "scale": scale}
    card = Card(
        name=name,
        arch="SRVGGNetCompact",
        arch_kwargs=kwargs,
        task=task,
        scale=scale,
        description="random weights for tests",
        license="BSD-3-Clause",
        metrics={"psnr": 1.5},
        extra=extra,
    )
    return save_weights(home / "weights" / f"{name}.safetensors", SRVGGNetCompact(**kwargs), card)


def gradient(path: Path, w: int, h: int) -> Path:
    """A smooth 8-bit RGB image (compresses well, so it stays under the upload limit)."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    rgb = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], axis=2)
    rgb += 0.15 * np.sin(xx[..., None] / 3.0)  # some detail for the network to work on
    write_image(path, np.clip(rgb, 0, 1))
    return path


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w x h pixels and that holds no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from img2img.app import AppSettings, launch

    root = tmp_path_factory.mktemp("app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMG2IMG_HOME", str(root / "home"))
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        weights = save_tiny_model(root / "home")
        # A scale-1 network filed as a translation model, so the Translate tab appears.
        translator = save_tiny_model(root / "home", "tiny-a2b", task="translate", scale=1, direction="A→B")
        settings = AppSettings(
            port=free_port(), max_pixels=MAX_PIXELS, max_file_mb=MAX_FILE_MB, timeout=60, queue_size=2
        )
        demo = launch(settings, prevent_thread_lock=True, quiet=True)
        try:
            client = Client(demo.local_url, verbose=False, download_files=str(root / "downloads"))
            yield SimpleNamespace(
                url=demo.local_url,
                client=client,
                weights=weights,
                translator=translator,
                root=root,
                cache=root / "gradio",
            )
        finally:
            demo.close()


def upscale(app, path: Path, model: str = "tiny-x4", tile: str = "auto", outscale: float = 4):
    return app.client.predict(handle_file(str(path)), model, tile, "auto", "model", outscale, api_name="/upscale")


def test_upscale_returns_the_models_output_as_png(app, tmp_path):
    src = gradient(tmp_path / "grad.png", 40, 28)
    (before, after), download, status, card = upscale(app, src)
    assert Path(download).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(download) as im:
        assert im.size == (160, 112) and im.mode == "RGB"
        got = np.asarray(im)
    with Image.open(before) as im:
        assert im.size == (160, 112)  # the slider compares images of the same size
    # Exactly what the public API gives for the same weights, written as an 8-bit PNG.
    expected = infer.load(app.weights)(read_image(src).rgb)
    write_image(tmp_path / "expected.png", expected, bit_depth=8)
    assert np.array_equal(got, np.asarray(Image.open(tmp_path / "expected.png")))
    assert "160×112" in status and "tiny-x4" in card and "BSD-3-Clause" in card and "psnr" in card


def test_translate_tab_runs_the_translation_model(app, tmp_path):
    src = EXAMPLES / "coffee_alpha.png"
    (before, after), download, status, card = app.client.predict(
        handle_file(str(src)), "tiny-a2b", "auto", "auto", api_name="/translate"
    )
    img = read_image(src)
    x = np.concatenate([img.rgb, img.alpha[..., None]], axis=2)
    expected = infer.load(app.translator)(x, alpha_mode="bicubic")  # alpha carried over, not translated
    write_image(tmp_path / "expected.png", expected[..., :3], alpha=expected[..., 3])
    with Image.open(download) as im:
        assert im.mode == "RGBA" and im.size == (120, 80)
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(tmp_path / "expected.png")))
    assert "A→B" in card and "tiny-a2b" in status
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown translate model"):
        app.client.predict(handle_file(str(src)), "tiny-x4", "auto", "auto", api_name="/translate")


def test_sixteen_bit_and_alpha_survive(app):
    (_, after), download, _, _ = upscale(app, EXAMPLES / "camera_16bit.png")
    with Image.open(download) as im:
        assert im.mode.startswith("I;16") and im.size == (384, 384)
        assert np.asarray(im).max() > 255  # real 16-bit values, not 8-bit data in a 16-bit file
    _, download, _, _ = upscale(app, EXAMPLES / "coffee_alpha.png", outscale=2)
    with Image.open(download) as im:
        assert im.mode == "RGBA" and im.size == (240, 160)
        alpha = np.asarray(im)[..., 3]
    assert alpha.min() < 10 and alpha.max() > 245  # transparent corners, opaque middle


def test_oversized_upload_gets_413(app):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * int(MAX_FILE_MB * 2**20 + 1024)
    r = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=30)
    assert r.status_code == 413


@pytest.mark.parametrize("target", ["/etc/passwd", "source"])
def test_file_route_serves_nothing_outside_the_cache(app, target):
    from img2img.app import handlers

    path = handlers.__file__ if target == "source" else target
    r = httpx.get(f"{app.url}gradio_api/file={path}", timeout=30)
    assert r.status_code in (403, 404)
    assert "root:" not in r.text and "class Runner" not in r.text


def test_direct_http_calls_cannot_skip_the_queue(app):
    r = httpx.post(f"{app.url}gradio_api/run/upscale", json={"data": [None, "tiny-x4"]}, timeout=30)
    assert r.status_code == 404


def test_corrupt_upload_gives_a_readable_error(app, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not a png" * 10)
    with pytest.raises(gradio_client.exceptions.AppError) as e:
        upscale(app, bad)
    msg = str(e.value)
    assert "broken.png" in msg and ("corrupt" in msg or "cannot decode" in msg)
    assert "Traceback" not in msg and str(app.root) not in msg


def test_too_many_pixels_refused_from_the_header(app, tmp_path):
    outputs_before = sorted(app.cache.glob("img2img-*"))
    # The header claims 1000x1000 but no pixel data follows: only a header check can name the size.
    with pytest.raises(gradio_client.exceptions.AppError) as e:
        upscale(app, png_header_only(tmp_path / "huge.png", 1000, 1000))
    assert "1,000,000 pixels" in str(e.value) and f"{MAX_PIXELS:,}" in str(e.value)
    # A real image just over the limit is refused the same way, and no result was produced for either.
    with pytest.raises(gradio_client.exceptions.AppError, match="more than this app accepts"):
        upscale(app, gradient(tmp_path / "big.png", 600, 520))
    assert sorted(app.cache.glob("img2img-*")) == outputs_before


def test_unknown_model_and_options_are_refused(app, tmp_path):
    src = gradient(tmp_path / "g.png", 16, 16)
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown upscale model"):
        upscale(app, src, model="../../etc/passwd")
    with pytest.raises(gradio_client.exceptions.AppError, match="Tile size"):
        upscale(app, src, tile="99999")
    with pytest.raises(gradio_client.exceptions.AppError, match="Output scale"):
        upscale(app, src, outscale=64)


def test_flood_beyond_the_queue_is_refused_not_hung(app, tmp_path):
    # One request runs (many small tiles keep it busy), two may wait (queue_size=2), the rest are refused.
    src = gradient(tmp_path / "slow.png", 540, 540)
    jobs = [
        app.client.submit(handle_file(str(src)), "tiny-x4", "128", "auto", "model", 4, api_name="/upscale")
        for _ in range(8)
    ]
    done, refused = 0, 0
    for job in jobs:
        try:
            _, download, _, _ = job.result(timeout=120)
            assert Path(download).is_file()
            done += 1
        except gradio_client.utils.QueueError as e:
            assert "full" in str(e).lower()
            refused += 1
    assert refused >= 1 and done >= 1 and done + refused == len(jobs)
    upscale(app, gradient(tmp_path / "after.png", 16, 16))  # and the app still serves


def test_deadline_stops_abandoned_work(tmp_path, monkeypatch):
    from img2img.app import AppSettings
    from img2img.app.handlers import Cancelled, Runner

    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path))
    runner = Runner(AppSettings(timeout=0.5), tmp_path)
    stopped = threading.Event()

    def endless(job) -> None:
        try:
            for i in range(100_000):
                job.progress(i, 100_000)  # the inference loop reports between tiles
                time.sleep(0.01)
        except Cancelled:
            stopped.set()
            raise

    with pytest.raises(gr.Error, match="time limit"):
        runner.run(endless)
    assert stopped.wait(10)  # the worker saw the cancel flag and stopped
    assert runner.run(lambda job: 42) == 42  # and the model slot is free again


def test_cli_validates_flags_and_stays_light(capsys):
    assert cli_main(["app", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert cli_main(["app", "--timeout", "0"]) == 2
    # `img2img --help` builds every sub-command's flags without loading Gradio or torch.
    code = "import sys, img2img.cli as c; c.build_parser(); print('gradio' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    launcher = Path(__file__).resolve().parent.parent / "apps" / "gradio_app.py"
    r = subprocess.run([sys.executable, str(launcher), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--max-pixels" in r.stdout and "--queue-size" in r.stdout


def test_model_info_lists_each_benchmark_without_its_protocol_text() -> None:
    from img2img.app.handlers import card_markdown

    card = Card(
        name="m",
        arch="RRDBNet",
        arch_kwargs={},
        task="upscale",
        scale=4,
        metrics={
            "Set5_x4": {"psnr_y": 29.8123, "ssim_y": 0.84, "images": 5, "protocol": {"color": "Y of BT.601"}},
            "protocol": "first 5 HR images, border 4 px cropped",
            "psnr_y": 29.7,
            "step": 100,
        },
    )
    text = card_markdown("m", None, card)
    assert "- Set5_x4: psnr_y 29.81, ssim_y 0.84, images 5" in text
    assert "- last validation: psnr_y 29.7, step 100" in text
    assert "BT.601" not in text and "border 4 px" not in text


def test_app_engine_setting_runs_image_tabs_in_onnxruntime(tmp_path, monkeypatch):
    """`img2img app --engine onnxruntime`: the Upscale tab's result is the torch result (within 1/255) and its
    status says which engine ran; bf16 is refused with the reason instead of running another precision."""
    pytest.importorskip("onnxruntime")
    from img2img.app import AppSettings
    from img2img.app.handlers import Runner
    from img2img.commands.app import _settings

    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    weights = save_tiny_model(tmp_path / "home")
    runner = Runner(AppSettings(engine="onnxruntime"), tmp_path / "out")
    src = runner.upload_root / "grad.png"
    gradient(src, 40, 28)
    (_, after), download, status, _ = runner.upscale({"path": str(src), "orig_name": "grad.png"}, "tiny-x4")
    assert "(fp32, onnxruntime)" in status
    got = read_image(download).rgb
    want = infer.load(weights, device="cpu")(read_image(src).rgb)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1 / 255 + 1e-6
    with pytest.raises(gr.Error, match="runs fp32"):
        runner.upscale({"path": str(src), "orig_name": "grad.png"}, "tiny-x4", precision="bf16")
    args = build_parser().parse_args(["app", "--engine", "onnxruntime"])
    assert _settings(args).engine == "onnxruntime"
