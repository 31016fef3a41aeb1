"""The web app in a real browser (Debian's headless Chromium driven by Playwright): a person opens the page,
picks a tab and a model, uploads an image, clicks the button and sees the before/after slider.

`python tests/test_app_browser.py [DOCS_DIR]` takes the documentation screenshots (app.png, app_translate.png)
with the real default model (`realesr-animevideov3`), the bundled pix2pix facades model and the
bundled examples."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, REPO, free_port

EXAMPLE = REPO / "img2img" / "app" / "examples" / "astronaut.png"
LABELS = REPO / "img2img" / "app" / "examples" / "translate" / "facade_labels.png"
PIX2PIX = "pix2pix-facades-small"  # bundled in weights/
TAB_LABELS = {"upscale": "Upscale", "translate": "Translate"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install chromium"),
]


def run_in_browser(url: str, task: str, image: Path, screenshot: Path, model: str | None = None) -> dict:
    """Drive one tab (`upscale`, `translate`) as a person would; returns what the page shows afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector("#upscale-run, #translate-run", state="attached", timeout=30_000)
            page.get_by_role("tab", name=TAB_LABELS[task]).click()
            page.wait_for_selector(f"#{task}-run", timeout=30_000)
            if model is not None:  # pick it from the dropdown list, by its visible label
                page.click(f"#{task}-model input")
                page.get_by_role("option", name=model).first.click()
            page.set_input_files(f"#{task}-input input[type=file]", str(image))
            page.wait_for_selector(f"#{task}-input img", timeout=30_000)  # the upload's preview
            page.click(f"#{task}-run")
            # Both slider images present and decoded by the browser.
            page.wait_for_function(
                """sel => { const imgs = [...document.querySelectorAll(sel)];
                            return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
                arg=f"#{task}-result img[data-testid='imageslider-image']",
                timeout=90_000,
            )
            shown = page.eval_on_selector_all(
                f"#{task}-result img[data-testid='imageslider-image']",
                "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight])",
            )
            status = page.inner_text(f"#{task}-status")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            return {"images": shown, "status": status, "model": page.input_value(f"#{task}-model input")}
        finally:
            browser.close()


def save_tiny_model(home: Path) -> None:
    """A small random x4 network, listed by the catalog as user weights `tiny-x4`."""
    import torch

    from img2img.archs import SRVGGNetCompact
    from img2img.weights.format import Card, save_weights

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
    seen = run_in_browser(app_url, "upscale", EXAMPLE, shot, model="tiny-x4")
    assert seen["model"].startswith("tiny-x4")
    (before_src, bw, bh), (after_src, aw, ah) = seen["images"]
    assert before_src.endswith(".png") and after_src.endswith("astronaut_x4.png")
    assert "/gradio_api/file=" in after_src
    assert (bw, bh) == (aw, ah) == (512, 512)  # both sides of the slider at the output size
    assert "128×128 → 512×512" in seen["status"] and "tiny-x4" in seen["status"]
    assert shot.stat().st_size > 10_000


def test_translate_tab_runs_the_bundled_pix2pix_model(app_url):
    shot = REPO / "test-artifacts" / "app_translate.png"
    shot.unlink(missing_ok=True)
    seen = run_in_browser(app_url, "translate", LABELS, shot, model=PIX2PIX)
    assert seen["model"].startswith(PIX2PIX) and "label map → photo" in seen["model"]
    (before_src, bw, bh), (after_src, aw, ah) = seen["images"]
    assert after_src.endswith(f"facade_labels_{PIX2PIX}.png") and "/gradio_api/file=" in after_src
    assert (bw, bh) == (aw, ah) == (256, 256)  # a translation keeps the size
    assert "256×256 → 256×256" in seen["status"] and PIX2PIX in seen["status"]
    assert shot.stat().st_size > 10_000


if __name__ == "__main__":
    # Documentation screenshots: the real catalog and models, served like `img2img app`.
    from img2img.app import AppSettings, launch

    docs = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs"
    os.chdir(REPO)
    demo = launch(AppSettings(port=free_port()), prevent_thread_lock=True, quiet=True)
    try:
        for task, image, name, model in [
            ("upscale", EXAMPLE, "app.png", None),
            ("translate", LABELS, "app_translate.png", PIX2PIX),
        ]:
            result = run_in_browser(demo.local_url, task, image, docs / name, model)
            print(f"{docs / name}: {result['model']}, {result['status']}")
    finally:
        demo.close()
