"""Layout of the web app: one tab per task that has weights in the catalog. Each tab is one small function
listed in `TABS`, so Paint->photo (`synthesize`) and Text->image (`generate`) are one function each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


def upscale_tab(runner: Runner, infos: list[WeightsInfo]) -> None:
    """Super-resolution: upload, pick a model and options, compare before/after, download the PNG."""
    choices = _model_choices(infos, runner, first=DEFAULT_UPSCALE)
    first = choices[0][1]
    scale = runner.infos[first].scale
    with gr.Tab("Upscale", id="upscale"):
        with gr.Row():
            with gr.Column(scale=2):
                image = _input_image("upscale")
                model = gr.Dropdown(choices=choices, value=first, label="Model", elem_id="upscale-model")
                with gr.Accordion("Settings", open=False):
                    tile = gr.Dropdown(list(TILES), value="auto", label="Tile size", info=_TILE_INFO)
                    precision = gr.Radio(precisions(), value="auto", label="Precision", info=_PRECISION_INFO)
                    alpha = gr.Radio(list(ALPHA_MODES), value="model", label="Alpha channel", info=_ALPHA_INFO)
                    outscale = gr.Slider(1, scale, value=scale, step=0.5, label="Output scale")
                run = gr.Button("Upscale", variant="primary", elem_id="upscale-run")
                _examples(image, "upscale")
            with gr.Column(scale=3):
                slider, download, status, card = _result_panel(
                    "upscale", runner.describe(first), "Before (bicubic) / after"
                )

        def on_model(name: str) -> tuple[gr.Slider, str]:
            s = runner.infos[name].scale if name in runner.infos else scale
            return gr.Slider(minimum=1, maximum=s, value=s), runner.describe(name)

        model.change(on_model, model, [outscale, card], queue=False, api_visibility="private")
        run.click(
            runner.upscale,
            [image, model, tile, precision, alpha, outscale],
            [slider, download, status, card],
            api_name="upscale",
            preprocess=False,
            concurrency_limit=1,
            concurrency_id=MODEL_SLOT,
        )


def translate_tab(runner: Runner, infos: list[WeightsInfo]) -> None:
    """pix2pix / CycleGAN: each model maps one domain to another (its direction is in the label)."""
    choices = _model_choices(infos, runner)
    first = choices[0][1]
    with gr.Tab("Translate", id="translate"):
        with gr.Row():
            with gr.Column(scale=2):
                image = _input_image("translate")
                model = gr.Dropdown(choices=choices, value=first, label="Model (direction)", elem_id="translate-model")
                with gr.Accordion("Settings", open=False):
                    tile = gr.Dropdown(list(TILES), value="auto", label="Tile size", info=_TILE_INFO)
                    precision = gr.Radio(precisions(), value="auto", label="Precision", info=_PRECISION_INFO)
                run = gr.Button("Translate", variant="primary", elem_id="translate-run")
                _examples(image, "translate")
            with gr.Column(scale=3):
                slider, download, status, card = _result_panel("translate", runner.describe(first))
        model.change(runner.describe, model, card, queue=False, api_visibility="private")
        run.click(
            runner.translate,
            [image, model, tile, precision],
            [slider, download, status, card],
            api_name="translate",
            preprocess=False,
            concurrency_limit=1,
            concurrency_id=MODEL_SLOT,
        )


# task word -> tab builder; a tab is shown only when the catalog has weights for its task
TABS: dict[str, Callable[[Runner, list[WeightsInfo]], None]] = {
    "upscale": upscale_tab,
    "translate": translate_tab,
}


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
            for task, tab in TABS.items():
                infos = runner.models_for(task)
                if infos:
                    tab(runner, infos)
                    shown += 1
        if not shown:
            gr.Markdown(
                "No models found. List them with `img2img models`, or put `.safetensors` weights in the "
                "catalog's weights folder, then restart the app."
            )
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1, api_open=False)
    return demo
