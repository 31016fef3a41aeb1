"""The web app in a real browser (Debian's headless Chromium driven by Playwright): a person opens the page,
picks a model, uploads an image, clicks Upscale and sees the before/after slider.

`python tests/test_app_browser.py [docs/app.png]` takes the documentation screenshot with the real default
model (`realesr-animevideov3`) and the bundled astronaut example."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "img2img" / "app" / "examples" / "astronaut.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SLIDER_IMAGES = "#upscale-result img[data-testid='imageslider-image']"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install chromium"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upscale_in_browser(url: str, image: Path, screenshot: Path, model: str | None = None) -> dict:
    """Drive the Upscale tab as a person would; returns what the page shows afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector("#upscale-run", timeout=30_000)
            if model is not None:  # pick it from the dropdown list, by its visible label
                page.click("#upscale-model input")
                page.get_by_role("option", name=model).first.click()
            page.set_input_files("#upscale-input input[type=file]", str(image))
            page.wait_for_selector("#upscale-input img", timeout=30_000)  # the upload's preview
            page.click("#upscale-run")
            # Both slider images present and decoded by the browser.
            page.wait_for_function(
                """sel => { const imgs = [...document.querySelectorAll(sel)];
                            return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
                arg=SLIDER_IMAGES,
                timeout=90_000,
            )
            shown = page.eval_on_selector_all(
                SLIDER_IMAGES, "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight])"
            )
            status = page.inner_text("#upscale-status")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            return {"images": shown, "status": status, "model": page.input_value("#upscale-model input")}
        finally:
            browser.close()


def save_tiny_model(home: Path) -> None:
    """A small random x4 network, listed by the catalog as user weights `tiny-x4`."""
    import torch

    from img2img.archs import SRVGGNetCompact
    from img2img.weights import Card, save_weights

    torch.manual_seed(0)
    kwargs = {"nf": 8, "num_conv": 2, "scale": 4}
    card = Card(name="tiny-x4", arch="SRVGGNetCompact", arch_kwargs=kwargs, task="upscale", scale=4)
    save_weights(home / "weights" / "tiny-x4.safetensors", SRVGGNetCompact(**kwargs), card)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from img2img.app import AppSettings, launch

    root = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMG2IMG_HOME", str(root / "home"))
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        save_tiny_model(root / "home")
        demo = launch(AppSettings(port=free_port()), prevent_thread_lock=True, quiet=True)
        try:
            yield demo.local_url
        finally:
            demo.close()


def test_upload_run_and_compare_in_the_browser(app_url):
    shot = REPO / "test-artifacts" / "app_upscale.png"
    shot.unlink(missing_ok=True)
    seen = upscale_in_browser(app_url, EXAMPLE, shot, model="tiny-x4")
    assert seen["model"].startswith("tiny-x4")
    (before_src, bw, bh), (after_src, aw, ah) = seen["images"]
    assert before_src.endswith(".png") and after_src.endswith("astronaut_x4.png")
    assert "/gradio_api/file=" in after_src
    assert (bw, bh) == (aw, ah) == (512, 512)  # both sides of the slider at the output size
    assert "128×128 → 512×512" in seen["status"] and "tiny-x4" in seen["status"]
    assert shot.stat().st_size > 10_000


if __name__ == "__main__":
    # Documentation screenshot: the real catalog and default model, served like `img2img app`.
    from img2img.app import AppSettings, launch

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "app.png"
    os.chdir(REPO)
    demo = launch(AppSettings(port=free_port()), prevent_thread_lock=True, quiet=True)
    try:
        result = upscale_in_browser(demo.local_url, EXAMPLE, out)
        print(f"{out}: {result['model']}, {result['status']}")
    finally:
        demo.close()
