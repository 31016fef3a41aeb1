"""Request handling of the Paint tab (label map -> photo) and the Text tab (prompt -> images), on the same
Runner as the image tabs: choices checked against the catalog, uploads checked before any work, one model
at a time under the per-request deadline, readable errors."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from img2img.app.handlers import Runner, card_markdown, fail
from img2img.io.images import write_image
from img2img.io.labels import LabelSpec, colourise, snap_painting, starting_canvas

MAX_IMAGES = 8  # per Text request
MAX_PROMPT = 300  # characters
CANVAS = 256  # px, the Paint tab's canvas side


def _seed(value: Any) -> int:
    try:
        seed = int(float(value))
    except (TypeError, ValueError):
        raise fail("The seed must be a whole number.") from None
    if not 0 <= seed < 2**31 or not math.isfinite(float(value)):
        raise fail("The seed must be between 0 and 2147483647.")
    return seed


def label_spec(runner: Runner, name: str) -> LabelSpec | None:
    card = runner.card(name)
    try:
        return LabelSpec.from_dict(card.inputs) if card is not None else None
    except Exception:  # noqa: BLE001 - a broken card shows no palette; running it reports the error
        return None


def palette_hex(spec: LabelSpec | None) -> list[str]:
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in (spec.palette if spec else [])]


def legend_html(spec: LabelSpec | None) -> str:
    """Colour swatches with class names, so painters know what each brush colour means."""
    if spec is None or not spec.palette:
        return "<p>This model has no palette to paint with; upload a label map instead.</p>"
    names = spec.classes or [f"class {i}" for i in range(spec.label_nc)]
    items = [
        f'<span style="display:inline-block;margin:2px 8px 2px 0"><span style="display:inline-block;width:14px;'
        f'height:14px;background:{c};border:1px solid #888;vertical-align:middle"></span> {html.escape(n)}</span>'
        for c, n in zip(palette_hex(spec), names, strict=False)
    ]
    return '<div id="synthesize-legend">' + "".join(items) + "</div>"


def canvas_file(runner: Runner, name: str) -> str | None:
    """A PNG of the model's starting scene in its palette (written once into the app's cache)."""
    spec = label_spec(runner, name)
    if spec is None or not spec.palette:
        return None
    path = runner.out_root / "img2img-canvas" / f"{name}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb = colourise(starting_canvas(spec, CANVAS, CANVAS), spec.palette)
        write_image(path, rgb.astype(np.float32) / 255.0)
    return str(path)


def _composite(editor: Any) -> Any:
    """The flattened painting from an ImageEditor payload (or a plain upload)."""
    if isinstance(editor, dict) and "composite" in editor:
        return editor.get("composite")
    return editor


def synthesize(
    runner: Runner, editor: Any, model_name: str, style: Any = None, seed: Any = 0, progress: Any = None
) -> tuple[tuple[str, str], str, str, str]:
    """Painting (or uploaded colour label map) -> photo. Returns ((label map, result), PNG, status, card)."""
    name, precision, _ = runner.check_choice("synthesize", model_name, "auto", "auto")
    spec = label_spec(runner, name)
    if spec is None or not spec.palette:
        raise fail(f"{name} has no palette to paint with.")
    seed = _seed(seed)
    painting, stem = runner.read_upload(_composite(editor))
    if isinstance(editor, dict):  # the editor's flattened canvas is a file named "composite"
        stem = "painting"
    rgb8 = np.clip(np.round(painting.rgb * 255), 0, 255).astype(np.uint8)
    if rgb8.shape[2] == 1:
        rgb8 = np.repeat(rgb8, 3, axis=2)
    ids = snap_painting(rgb8, spec.palette)
    style_rgb = runner.read_upload(style)[0].rgb if style else None
    if style_rgb is not None and style_rgb.shape[2] == 1:
        style_rgb = np.repeat(style_rgb, 3, axis=2)

    def work(job: Any) -> tuple[Any, np.ndarray]:
        model = runner._model(name, precision, None)
        return model, model(ids, style=style_rgb, seed=seed)

    start = time.monotonic()
    model, out = runner.run(work, progress, desc=f"Synthesizing with {name}")
    d = runner.new_output_dir()
    label = d / "label_map.png"
    write_image(label, colourise(ids, spec.palette).astype(np.float32) / 255.0)
    result = d / f"{stem}_{name}.png"
    write_image(result, out)
    names = spec.classes or [str(i) for i in range(spec.label_nc)]
    used = ", ".join(names[i] for i in np.unique(ids))
    status = f"**{ids.shape[1]}×{ids.shape[0]}** label map ({used}) → photo with {name} ({model.precision})"
    status += f", seed {seed}"
    status += f", {'style image' if style_rgb is not None else 'random style'}, {time.monotonic() - start:.1f} s"
    return (str(label), str(result)), str(result), status, card_markdown(name, runner.infos.get(name), model.card)


def generate(
    runner: Runner, prompt: Any, model_name: str, n: Any = 4, seed: Any = 0, stage: Any = "last", progress: Any = None
) -> tuple[list[tuple[str, str]], str, str]:
    """Prompt -> images. Returns (gallery of (path, caption), status, card)."""
    name, precision, _ = runner.check_choice("generate", model_name, "auto", "auto")
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail("Write a prompt first, e.g. one of the examples.")
    if len(prompt) > MAX_PROMPT:
        raise fail(f"The prompt is longer than {MAX_PROMPT} characters.")
    try:
        count = int(n)
    except (TypeError, ValueError):
        raise fail("The number of images must be a whole number.") from None
    if not 1 <= count <= MAX_IMAGES:
        raise fail(f"The number of images must be between 1 and {MAX_IMAGES}.")
    seed = _seed(seed)
    if str(stage) not in ("last", "1", "2"):
        raise fail("The stage must be last, 1 or 2.")

    def work(job: Any) -> tuple[Any, Any]:
        model = runner._model(name, precision, None)
        which = None if str(stage) == "last" else int(stage)
        if which is not None and which not in model.stages:
            raise fail(f"{name} has stage(s) {sorted(model.stages)}, not {which}.")
        return model, model(prompt.strip(), n=count, seed=seed, stage=which)[0]

    start = time.monotonic()
    model, result = runner.run(work, progress, desc=f"Generating with {name}")
    d = runner.new_output_dir()
    gallery = []
    for k, (image, s) in enumerate(zip(result.images, result.seeds, strict=True)):
        path = d / f"{k:02d}_seed{s}.png"
        write_image(path, image)
        gallery.append((str(path), f"seed {s}"))
    status = f"**{count} image(s)** {image.shape[1]}×{image.shape[0]} with {name} ({model.precision}), "
    status += f"seeds {seed}–{seed + count - 1}"
    status += f", {time.monotonic() - start:.1f} s"
    if result.unknown_words:
        words = ", ".join(result.unknown_words)
        gr.Warning(f"Not in {name}'s vocabulary (read as unknown): {words}")
        status += f"\n\nNote: words not in the model's vocabulary (read as unknown): {html.escape(words)}"
    return gallery, status, card_markdown(name, runner.infos.get(name), model.card)


def example_prompts(runner: Runner, name: str, count: int = 4) -> list[str]:
    """Prompts built from the model's card (its `examples`), else its first vocabulary words."""
    card = runner.card(name)
    if card is None:
        return []
    examples = card.inputs.get("examples") or []
    if examples:
        return [str(e) for e in examples[:count]]
    words = (card.inputs.get("tokenizer") or {}).get("words") or []
    return [" ".join(words[:6])] if words else []


def path_or_none(value: Any) -> str | None:
    return str(Path(value)) if value else None
