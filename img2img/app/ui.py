"""Layout of the web app: one tab per task that has weights in the catalog. Each tab is a `TabSpec` in
`TABS` (its controls and its Runner handler); `task_tab` builds the shared page around it, so a new task
is a declaration, its handler, and (for a new kind of input or result) one entry in INPUTS / RESULTS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from img2img.app import AppSettings, generative
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
        if info.task == "synthesize" and card is not None:
            detail = f"{card.inputs.get('label_nc', '?')} classes"
        elif info.task == "generate" and card is not None:
            detail = f"{len(card.inputs.get('stages') or [])} stage(s), {card.output.get('height', '?')} px"
        detail = detail or f"x{info.scale}"
        size = f", {info.size_mb:.{1 if info.size_mb < 1 else 0}f} MB" if info.size_mb else ""
        choices.append((f"{info.name} ({detail}{size})", info.name))
    return choices


def _input_image(task: str, runner: Runner | None = None, first: str | None = None) -> list[Any]:
    image = _upload(task)
    _examples(image, task)
    return [image]


def _upload(task: str) -> gr.Image:
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
    on_model: Callable[[Runner, str], list[Any]] | None = None  # updates of inputs + controls for a new model


def upscale_controls(runner: Runner, first: str) -> list[gr.components.Component]:
    scale = runner.infos[first].scale
    return [
        gr.Dropdown(list(TILES), value="auto", label="Tile size", info=_TILE_INFO),
        gr.Radio(precisions(), value="auto", label="Precision", info=_PRECISION_INFO),
        gr.Radio(list(ALPHA_MODES), value="model", label="Alpha channel", info=_ALPHA_INFO),
        gr.Slider(1, scale, value=scale, step=0.5, label="Output scale"),
    ]


def upscale_on_model(runner: Runner, name: str) -> list[Any]:
    """A new model's scale bounds the output-scale slider; the input and the other controls stay."""
    s = runner.infos[name].scale if name in runner.infos else 4
    return [gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Slider(minimum=1, maximum=s, value=s)]


def translate_controls(runner: Runner, first: str) -> list[gr.components.Component]:
    return [
        gr.Dropdown(list(TILES), value="auto", label="Tile size", info=_TILE_INFO),
        gr.Radio(precisions(), value="auto", label="Precision", info=_PRECISION_INFO),
    ]


def _input_paint(task: str, runner: Runner, first: str) -> list[Any]:
    """A canvas in the model's palette (a first scene already painted) and the legend of its classes."""
    spec = generative.label_spec(runner, first)
    colours = generative.palette_hex(spec)
    editor = gr.ImageEditor(
        value=generative.canvas_file(runner, first), type="filepath", image_mode="RGB", format="png",
        sources=["upload"], brush=gr.Brush(colors=colours, default_color=colours[1 % len(colours)] if colours else None,
                                           color_mode="fixed", default_size=16),
        # An eraser with a size: without one (eraser=False) the browser editor fails to draw its toolbar, so
        # there is no brush colour to pick. Erasing a stroke shows the starting canvas again.
        eraser=gr.Eraser(default_size=16), layers=False, canvas_size=(generative.CANVAS, generative.CANVAS),
        fixed_canvas=True, transforms=(), label="Paint the scene (brush colours are the model's classes)",
        elem_id=f"{task}-canvas", height=generative.CANVAS + 120,
    )  # fmt: skip
    legend = gr.HTML(generative.legend_html(spec), elem_id=f"{task}-legend-box")
    return [editor, legend]


def paint_on_model(runner: Runner, name: str) -> list[Any]:
    spec = generative.label_spec(runner, name)
    colours = generative.palette_hex(spec)
    first_colour = colours[1 % len(colours)] if colours else None
    editor = gr.ImageEditor(
        value=generative.canvas_file(runner, name),
        brush=gr.Brush(colors=colours, default_color=first_colour, color_mode="fixed", default_size=16),
    )
    return [editor, generative.legend_html(spec), gr.skip(), gr.skip()]


def paint_controls(runner: Runner, first: str) -> list[gr.components.Component]:
    return [
        gr.Image(
            label="Style image (optional; models with a style encoder)", type="filepath", format="png",
            sources=["upload"], height=160, elem_id="synthesize-style",
        ),
        gr.Number(value=0, precision=0, label="Seed", info="Another seed, another style (without a style image)",
                  elem_id="synthesize-seed"),
    ]  # fmt: skip


def _input_text(task: str, runner: Runner, first: str) -> list[Any]:
    box = gr.Textbox(label="Prompt", lines=2, max_length=generative.MAX_PROMPT, elem_id=f"{task}-prompt",
                     placeholder=(generative.example_prompts(runner, first) or ["a prompt"])[0])  # fmt: skip
    examples = generative.example_prompts(runner, first)
    if examples:
        gr.Examples(examples=[[e] for e in examples], inputs=[box], label="Example prompts", cache_examples=False)
    return [box]


def text_controls(runner: Runner, first: str) -> list[gr.components.Component]:
    return [
        gr.Slider(1, generative.MAX_IMAGES, value=4, step=1, label="Number of images", elem_id="generate-count"),
        gr.Number(value=0, precision=0, label="Seed", info="Image k uses seed + k", elem_id="generate-seed"),
        gr.Radio(["last", "1", "2"], value="last", label="Stage", info="Stage I (small) or Stage II (large)",
                 elem_id="generate-stage"),
    ]  # fmt: skip


def _result_gallery(task: str, card_text: str, label: str = "Images") -> tuple[gr.Gallery, gr.Markdown, gr.Markdown]:
    gallery = gr.Gallery(label=label, columns=4, height=420, elem_id=f"{task}-gallery", format="png")
    status = gr.Markdown(elem_id=f"{task}-status")
    with gr.Accordion("Model info", open=True):
        card = gr.Markdown(card_text)
    return gallery, status, card


INPUTS: dict[str, Callable[[str, Runner, str], list[Any]]] = {
    "image": _input_image, "paint": _input_paint, "text": _input_text,
}  # fmt: skip
RESULTS: dict[str, Callable[[str, str, str], tuple]] = {"slider": _result_panel, "gallery": _result_gallery}

# Upscale: super-resolution with a before/after slider. Translate: pix2pix / CycleGAN, each model maps
# one domain to another (its direction is in the label).
TABS: list[TabSpec] = [
    TabSpec("upscale", "Upscale", "Upscale", "upscale", upscale_controls, first=DEFAULT_UPSCALE,
            result_label="Before (bicubic) / after", on_model=upscale_on_model),
    TabSpec("translate", "Translate", "Translate", "translate", translate_controls, model_label="Model (direction)"),
    TabSpec("synthesize", "Paint", "Synthesize", "synthesize", paint_controls, input_kind="paint",
            result_label="Label map / photo", on_model=paint_on_model),
    TabSpec("generate", "Text", "Generate", "generate", text_controls, input_kind="text", result_kind="gallery",
            result_label="Images"),
]  # fmt: skip


def task_tab(spec: TabSpec, runner: Runner, infos: list[WeightsInfo]) -> None:
    """One tab from its declaration."""
    task = spec.task
    choices = _model_choices(infos, runner, first=spec.first)
    first = choices[0][1]
    with gr.Tab(spec.title, id=task):
        with gr.Row():
            with gr.Column(scale=2):
                inputs = INPUTS[spec.input_kind](task, runner, first)
                source = inputs[0]
                model = gr.Dropdown(choices=choices, value=first, label=spec.model_label, elem_id=f"{task}-model")
                with gr.Accordion("Settings", open=False):
                    controls = spec.controls(runner, first)
                run = gr.Button(spec.run_label, variant="primary", elem_id=f"{task}-run")
            with gr.Column(scale=3):
                outputs = list(RESULTS[spec.result_kind](task, runner.describe(first), spec.result_label))
        card = outputs[-1]
        if spec.on_model is not None:

            def on_model(name: str) -> list[Any]:
                return [*spec.on_model(runner, name), runner.describe(name)]

            model.change(on_model, model, [*inputs, *controls, card], queue=False, api_visibility="private")
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
        "Super-resolution (ESRGAN family), image-to-image translation (pix2pix, CycleGAN), label map -> photo "
        "(SPADE: paint a scene) and text -> image (StackGAN), running on this server. "
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
