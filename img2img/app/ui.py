"""Layout of the web app: one tab per task that has weights in the catalog. Each tab is a `TabSpec` in
`TABS` (its controls and its Runner handler); `task_tab` builds the shared page around it, so a new task
is a declaration, its handler, and (for a new kind of input or result) one entry in INPUTS / RESULTS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from img2img.app import AppSettings
from img2img.app.handlers import ALPHA_MODES, TILES, Runner, precisions
from img2img.weights.catalog import WeightsInfo

EXAMPLES_DIR = Path(__file__).parent / "examples"
DEFAULT_UPSCALE = "realesr-animevideov3"
MODEL_SLOT = "model"  # concurrency id shared by every tab: one model runs at a time

_TILE_INFO = "Input pixels per tile. Smaller tiles use less memory; auto picks one for this machine."
_ALPHA_INFO = "model: upscale transparency with the network; bicubic: resize it; none: drop it."
_PRECISION_INFO = "bf16 is faster on recent CPUs at a small quality cost; auto picks fp32 on CPU."


def _model_choices(infos: list[WeightsInfo], runner: Runner, first: str | None = None) -> list[tuple[str, str]]:
    """(label, catalog name) pairs, `first` on top; the label adds scale or direction and size."""
    ordered = sorted(infos, key=lambda i: (i.name != first, i.name))
    choices = []
    for info in ordered:
        card = runner.card(info.name)
        detail = card.extra.get("direction") if card is not None and info.task == "translate" else None
        detail = detail or f"x{info.scale}"
        size = f", {info.size_mb:.0f} MB" if info.size_mb else ""
        choices.append((f"{info.name} ({detail}{size})", info.name))
    return choices


def _input_image(task: str) -> gr.Image:
    # Handlers get the raw upload (preprocess=False), so 16-bit and alpha reach our own decoder intact.
    return gr.Image(
        label="Input image",
        type="filepath",
        image_mode=None,
        format="png",
        sources=["upload", "clipboard"],
        height=300,
        elem_id=f"{task}-input",
    )


def _examples(image: gr.Image, task: str, label: str = "Examples") -> None:
    """The shipped examples for a task: `examples/<task>/*.png`, else the photos in `examples/`."""
    files = sorted((EXAMPLES_DIR / task).glob("*.png")) or sorted(EXAMPLES_DIR.glob("*.png"))
    if files:
        gr.Examples(
            examples=[[str(f)] for f in files],
            inputs=[image],
            label=label,
            cache_examples=False,
        )


def _result_panel(
    task: str, card_text: str, label: str = "Before / after"
) -> tuple[gr.ImageSlider, gr.File, gr.Markdown, gr.Markdown]:
    slider = gr.ImageSlider(
        elem_id=f"{task}-result",
        label=label,
        type="filepath",
        format="png",
        interactive=False,
        max_height=560,
    )
    download = gr.File(label="Result as lossless PNG", interactive=False, elem_id=f"{task}-download")
    status = gr.Markdown(elem_id=f"{task}-status")
    with gr.Accordion("Model info", open=True):
        card = gr.Markdown(card_text)
    return slider, download, status, card


@dataclass(frozen=True)
class TabSpec:
    """A task's tab, declared: its controls and handler; the page around them (input, model picker with
    info panel, settings, run button, examples, result, download, status, queue slot) is shared."""

    task: str  # task word; the tab shows when the catalog has weights for it
    title: str
    run_label: str
    handler: str  # Runner method called as (input, model, *controls, progress)
    controls: Callable[[Runner, str], list[gr.components.Component]]  # settings, given the first model
    api_name: str = ""  # default: the task word
    first: str | None = None  # model picked first
    model_label: str = "Model"
    input_kind: str = "image"  # key of INPUTS
    result_kind: str = "slider"  # key of RESULTS
    result_label: str = "Before / after"
    on_model: Callable[[Runner, str], list[Any]] | None = None  # updates of the controls for a new model


def upscale_controls(runner: Runner, first: str) -> list[gr.components.Component]:
    scale = runner.infos[first].scale
    return [
        gr.Dropdown(list(TILES), value="auto", label="Tile size", info=_TILE_INFO),
        gr.Radio(precisions(), value="auto", label="Precision", info=_PRECISION_INFO),
        gr.Radio(list(ALPHA_MODES), value="model", label="Alpha channel", info=_ALPHA_INFO),
        gr.Slider(1, scale, value=scale, step=0.5, label="Output scale"),
    ]


def upscale_on_model(runner: Runner, name: str) -> list[Any]:
    """A new model's scale bounds the output-scale slider; the other controls stay."""
    s = runner.infos[name].scale if name in runner.infos else 4
    return [gr.skip(), gr.skip(), gr.skip(), gr.Slider(minimum=1, maximum=s, value=s)]


def translate_controls(runner: Runner, first: str) -> list[gr.components.Component]:
    return [
        gr.Dropdown(list(TILES), value="auto", label="Tile size", info=_TILE_INFO),
        gr.Radio(precisions(), value="auto", label="Precision", info=_PRECISION_INFO),
    ]


INPUTS: dict[str, Callable[[str], gr.components.Component]] = {"image": _input_image}
RESULTS: dict[str, Callable[[str, str, str], tuple]] = {"slider": _result_panel}

# Upscale: super-resolution with a before/after slider. Translate: pix2pix / CycleGAN, each model maps
# one domain to another (its direction is in the label).
TABS: list[TabSpec] = [
    TabSpec("upscale", "Upscale", "Upscale", "upscale", upscale_controls, first=DEFAULT_UPSCALE,
            result_label="Before (bicubic) / after", on_model=upscale_on_model),
    TabSpec("translate", "Translate", "Translate", "translate", translate_controls, model_label="Model (direction)"),
]  # fmt: skip


def task_tab(spec: TabSpec, runner: Runner, infos: list[WeightsInfo]) -> None:
    """One tab from its declaration."""
    task = spec.task
    choices = _model_choices(infos, runner, first=spec.first)
    first = choices[0][1]
    with gr.Tab(spec.title, id=task):
        with gr.Row():
            with gr.Column(scale=2):
                source = INPUTS[spec.input_kind](task)
                model = gr.Dropdown(choices=choices, value=first, label=spec.model_label, elem_id=f"{task}-model")
                with gr.Accordion("Settings", open=False):
                    controls = spec.controls(runner, first)
                run = gr.Button(spec.run_label, variant="primary", elem_id=f"{task}-run")
                _examples(source, task)
            with gr.Column(scale=3):
                outputs = list(RESULTS[spec.result_kind](task, runner.describe(first), spec.result_label))
        card = outputs[-1]
        if spec.on_model is not None:

            def on_model(name: str) -> list[Any]:
                return [*spec.on_model(runner, name), runner.describe(name)]

            model.change(on_model, model, [*controls, card], queue=False, api_visibility="private")
        else:
            model.change(runner.describe, model, card, queue=False, api_visibility="private")
        run.click(
            getattr(runner, spec.handler),
            [source, model, *controls],
            outputs,
            api_name=spec.api_name or task,
            preprocess=False,
            concurrency_limit=1,
            concurrency_id=MODEL_SLOT,
        )


def _header(settings: AppSettings) -> str:
    return (
        "# img2img\n"
        "Super-resolution (ESRGAN family) and image-to-image translation (pix2pix, CycleGAN), "
        "running on this server. "
        f"Limits: {settings.max_pixels / 1e6:g} megapixels and {settings.max_file_mb:g} MB per image, "
        f"{settings.timeout:g} s of work per request; results are deleted after "
        f"{settings.cache_age / 60:g} minutes."
    )


def build_app(settings: AppSettings | None = None) -> gr.Blocks:
    """The whole app as a `gr.Blocks`, with its queue (bounded, one model slot) configured."""
    settings = settings or AppSettings()
    with gr.Blocks(
        title="img2img",
        analytics_enabled=False,
        delete_cache=(settings.cache_every, settings.cache_age),
    ) as demo:
        runner = Runner(settings, Path(demo.GRADIO_CACHE))
        gr.Markdown(_header(settings))
        shown = 0
        with gr.Tabs():
            for spec in TABS:
                infos = runner.models_for(spec.task)
                if infos:
                    task_tab(spec, runner, infos)
                    shown += 1
        if not shown:
            gr.Markdown(
                "No models found. List them with `img2img models`, or put `.safetensors` weights in the "
                "catalog's weights folder, then restart the app."
            )
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1, api_open=False)
    return demo
