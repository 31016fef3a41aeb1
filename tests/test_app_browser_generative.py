"""The Paint and Text tabs in a real browser (Debian's headless Chromium driven by Playwright), with the tiny
label and text models in a temporary catalog. A person picks brush colours from the editor's swatches, paints
strokes with the mouse, runs the model and sees the label map beside the photo; repainting a stroke with
another class gives another photo. On the Text tab they type a prompt, pick a count and a seed, and get that
many images in the gallery; another seed gives other images."""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest

pytest.importorskip("gradio")
pytest.importorskip("playwright")

from browser_helpers import CHROMIUM, CHROMIUM_ARGS, REPO, free_port  # noqa: E402
from PIL import Image  # noqa: E402

from img2img import infer  # noqa: E402
from img2img.io.labels import map_colours  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install chromium"),
]

CANVAS = 256  # the Paint tab's canvas side (img2img.app.generative.CANVAS)
PROMPT = "a red circle on a blue background"
DECODED = """sel => { const imgs = [...document.querySelectorAll(sel)];
                      return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_labels):
    from img2img.app import AppSettings, launch

    root = tmp_path_factory.mktemp("browser_generative")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMG2IMG_HOME", str(root / "home"))
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        weights = root / "home" / "weights"
        weights.mkdir(parents=True)
        labels, _ = tiny_labels.save_labels(weights)
        text = tiny_labels.save_text(weights)
        demo = launch(AppSettings(port=free_port(), timeout=60), prevent_thread_lock=True, quiet=True)
        try:
            yield {"url": demo.local_url, "labels": labels, "text": text, "spec": tiny_labels.spec}
        finally:
            demo.close()


@pytest.fixture
def page(app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.errors = errors
            yield page
        finally:
            browser.close()


def open_tab(page, url: str, title: str, task: str, model: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name=title).click()
    page.wait_for_selector(f"#{task}-run", timeout=30_000)
    page.click(f"#{task}-model input")  # the model, from the dropdown list by its visible label
    page.get_by_role("option", name=re.compile(f"^{re.escape(model)} ")).click()
    assert page.input_value(f"#{task}-model input").startswith(model)


def fetch_image(page, selector: str, index: int = 0) -> tuple[str, np.ndarray]:
    """The src of a shown image and its pixels, downloaded from the app like the browser does."""
    src = page.locator(selector).nth(index).get_attribute("src")
    response = page.request.get(src)
    assert response.ok, f"{src}: HTTP {response.status}"
    return src, np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


# --- Paint ---

EDITOR = "#synthesize-canvas"
SLIDER = "#synthesize-result img[data-testid='imageslider-image']"


def css(rgb) -> str:
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def pick_colour(page, rgb) -> None:
    """Brush tool, colour button, then the swatch of that class's palette colour."""
    page.click(f"{EDITOR} button[aria-label='Brush']")
    page.click(f"{EDITOR} button[aria-label='Color']")
    page.click(f"{EDITOR} menu.swatch button.color[style*='background-color: {css(rgb)}']")
    page.wait_for_function(  # the colour button shows the chosen colour
        "([sel, c]) => document.querySelector(sel).style.color === c",
        arg=[f"{EDITOR} button[aria-label='Color']", css(rgb)],
    )
    page.click("#synthesize-legend")  # a click outside closes the swatches
    page.wait_for_selector(f"{EDITOR} menu.swatch", state="detached", timeout=5_000)


def image_box(page, palette) -> tuple[float, float, float]:
    """Where the picture is drawn on the editor's canvas (page x, page y of its corner, css px per pixel),
    found like a person does: the area in the palette's colours."""
    canvas = page.locator(f"{EDITOR} .pixi-target canvas")
    # The editor draws the new background a moment after the legend changes (software WebGL can take
    # seconds on a busy machine): look again until it is there.
    deadline = time.monotonic() + 30
    while True:
        box = canvas.bounding_box()
        shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(np.int32)
        inside = np.zeros(shot.shape[:2], bool)
        for colour in palette:
            inside |= np.abs(shot - np.asarray(colour)).max(axis=2) <= 2
        # Rows and columns mostly in palette colours (the toolbar's icons and the label's text are a few pixels).
        cols = np.flatnonzero(inside.sum(axis=0) > inside.shape[0] / 4)
        rows = np.flatnonzero(inside.sum(axis=1) > inside.shape[1] / 4)
        if len(cols) > 100 and len(rows) > 100:
            break
        assert time.monotonic() < deadline, "the starting canvas is not shown"
        page.wait_for_timeout(250)
    scale = (cols[-1] + 1 - cols[0]) / CANVAS
    assert abs((rows[-1] + 1 - rows[0]) / CANVAS - scale) < 0.02  # square: the whole canvas is in view
    return box["x"] + cols[0], box["y"] + rows[0], scale


def stroke(page, where: tuple[float, float, float], y: int, x0: int, x1: int) -> None:
    """A horizontal mouse stroke at canvas row y from column x0 to x1 (canvas pixels). The brush joins the
    points it is given with straight segments; few moves keep it fast under software WebGL."""
    left, top, s = where
    page.mouse.move(left + x0 * s, top + y * s)
    page.mouse.down()
    for x in (x0 + 1, (x0 + x1) / 2, x1):
        page.mouse.move(left + x * s, top + y * s)
    page.mouse.up()


def run_paint(page, previous: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Press Synthesize, wait for a new decoded label map and photo; returns them and the photo's src."""
    page.click("#synthesize-run")
    page.wait_for_function(
        """([sel, prev]) => { const imgs = [...document.querySelectorAll(sel)];
                              return imgs.length === 2 && imgs[1].getAttribute('src') !== prev
                                     && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=[SLIDER, previous],
        timeout=60_000,
    )
    sizes = page.eval_on_selector_all(SLIDER, "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[CANVAS, CANVAS], [CANVAS, CANVAS]]  # label map and photo at the canvas size
    _, label = fetch_image(page, SLIDER, 0)
    src, photo = fetch_image(page, SLIDER, 1)
    return label, photo, src


def test_paint_strokes_in_two_classes_then_repaint_one(app, page) -> None:
    spec = app["spec"]
    palette = [tuple(c) for c in spec.palette]  # a: black, b: red, c: blue
    open_tab(page, app["url"], "Paint", "synthesize", "tiny-labels")
    # Picking another model repaints the legend and the canvas (with the bundled facades model listed first).
    page.wait_for_function(
        "() => document.querySelector('#synthesize-legend').innerText.trim().split(/\\s+/).join(' ') === 'a b c'",
        timeout=30_000,
    )
    page.wait_for_selector(f"{EDITOR} button[aria-label='Color']", timeout=30_000)  # the editor's toolbar
    assert page.inner_text("#synthesize-legend").split() == ["a", "b", "c"]
    where = image_box(page, palette)

    # The starting scene is a over b (60% / 40%); a stroke of c in the a part, a stroke of a in the b part.
    pick_colour(page, palette[2])
    stroke(page, where, 60, 40, 216)
    pick_colour(page, palette[0])
    stroke(page, where, 210, 40, 216)
    label, photo, src = run_paint(page)
    assert src.endswith("/painting_tiny-labels.png")  # the download is named for what it is
    ids = map_colours(label, spec.palette)
    assert ids[60, 60:200].tolist() == [2] * 140  # the c stroke
    assert ids[210, 60:200].tolist() == [0] * 140  # the a stroke
    assert ids[20, 128] == 0 and ids[120, 128] == 0 and ids[180, 20] == 1 and ids[240, 128] == 1  # unpainted
    assert set(np.unique(ids)) == {0, 1, 2}  # edges of strokes snap to painted classes, never a fourth colour
    model = infer.load(app["labels"], device="cpu")
    want = model(ids)  # the photo is the model's picture of that label map
    assert np.abs(photo.astype(np.float32) / 255 - want).max() <= 1 / 255 + 1e-6
    status = page.inner_text("#synthesize-status")
    assert "256×256" in status and "a, b, c" in status and "tiny-labels" in status

    # The c stroke painted over in b: the label map and the photo change.
    pick_colour(page, palette[1])
    for y in (56, 64):
        stroke(page, where, y, 30, 226)
    label2, photo2, src2 = run_paint(page, previous=src)
    ids2 = map_colours(label2, spec.palette)
    assert src2 != src
    assert ids2[60, 60:200].tolist() == [1] * 140 and 2 not in np.unique(ids2)
    assert ids2[210, 60:200].tolist() == [0] * 140  # the other stroke stays
    want2 = model(ids2)
    assert np.abs(photo2.astype(np.float32) / 255 - want2).max() <= 1 / 255 + 1e-6
    assert not np.array_equal(photo2, photo)  # another photo (the tiny random network varies little)
    shot = REPO / "test-artifacts" / "app_paint.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not page.errors


# --- Text ---

GALLERY = "#generate-gallery img"


def run_text(page, count: int, previous: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
    page.click("#generate-run")
    wait_or_show(
        page,
        "text",
        lambda: page.wait_for_function(
            """([sel, n, prev]) => { const imgs = [...document.querySelectorAll(sel)];
                                 return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0
                                                                    && !prev.includes(i.getAttribute('src'))); }""",
            arg=[GALLERY, count, previous or []],
            timeout=60_000,
        ),
    )
    return [fetch_image(page, GALLERY, k) for k in range(count)]


def wait_or_show(page, name: str, wait) -> None:
    """Run a wait; when it times out, keep a screenshot and the status text, so the failure shows what the
    person would have seen."""
    try:
        wait()
    except Exception:
        shot = REPO / "test-artifacts" / f"failed_{name}.png"
        shot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        status = page.locator("#generate-status, #synthesize-status").all_inner_texts()
        raise AssertionError(f"timed out; status: {status}; errors: {page.errors}; screenshot: {shot}") from None


def set_number(page, selector: str, value: int) -> None:
    """Type a number into a Number or Slider box and leave the box, as a person does, and look that the box
    (and a slider's bar) shows it. A box typed into while the Settings accordion is still opening can be
    drawn again with its old value; a person then types it again, and so does this."""
    boxes = f"{selector} input[type=number], {selector} input[type=range]"
    shows = "([sel, v]) => [...document.querySelectorAll(sel)].every(i => i.value === v)"
    box = page.locator(f"{selector} input[type=number]")
    for _ in range(5):
        box.fill(str(value))
        box.press("Enter")
        box.press("Tab")
        try:
            page.wait_for_function(shows, arg=[boxes, str(value)], timeout=2_000)
            return
        except Exception:
            continue
    wait_or_show(page, "number", lambda: page.wait_for_function(shows, arg=[boxes, str(value)], timeout=2_000))


def test_text_prompt_count_and_seed_fill_the_gallery(app, page) -> None:
    open_tab(page, app["url"], "Text", "generate", "tiny-text")
    page.fill("#generate-prompt textarea", PROMPT)
    page.get_by_role("button", name="Settings").filter(visible=True).click()  # the accordion of this tab
    set_number(page, "#generate-count", 3)
    set_number(page, "#generate-seed", 5)
    first = run_text(page, 3)
    model = infer.load(app["text"], device="cpu")
    want = model(PROMPT, n=3, seed=5)[0].images
    for (_, got), w in zip(first, want, strict=True):
        assert got.shape == (32, 32, 3) and np.abs(got.astype(np.float32) / 255 - w).max() <= 1 / 255 + 1e-6
    status = page.inner_text("#generate-status")
    assert "3 image(s)" in status and "seeds 5–7" in status

    set_number(page, "#generate-seed", 9)
    second = run_text(page, 3, previous=[src for src, _ in first])
    want = model(PROMPT, n=3, seed=9)[0].images
    for (_, a), (_, b), w in zip(first, second, want, strict=True):
        assert np.abs(b.astype(np.float32) / 255 - w).max() <= 1 / 255 + 1e-6
        assert not np.array_equal(a, b)  # other seeds, other images (the tiny random network varies little)
    # The gallery is titled for what it shows, and each image is captioned with its seed.
    assert page.inner_text("#generate-gallery").split("\n") == ["Images", "seed 9", "seed 10", "seed 11"]
    assert "seeds 9–11" in page.inner_text("#generate-status")
    shot = REPO / "test-artifacts" / "app_text.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not page.errors
