"""Request handling for the web app: every upload is checked (file size, pixel count from the header) before
any work; models run one at a time in a worker thread under a per-request deadline that also stops the
abandoned work; failures reach the user as one readable `gr.Error`, never a traceback."""

from __future__ import annotations

import html
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np

from img2img.app import AppSettings
from img2img.errors import ImageError, Img2ImgError
from img2img.infer import model as infer
from img2img.io.images import LoadedImage, decode_image, probe_size, write_image
from img2img.weights import catalog
from img2img.weights.format import Card, read_card
from img2img.weights.validate import check_weights_file

log = logging.getLogger(__name__)
T = TypeVar("T")

# Choices offered in the UI; requests are checked against these, since the API can send anything.
TILES: dict[str, int | None] = {"auto": None, "whole image": 0, "128": 128, "256": 256, "512": 512}
ALPHA_MODES = ("model", "bicubic", "none")
_MODEL_CACHE_SIZE = 2  # loaded models kept in memory (x4plus is ~67 MB of fp32 weights)


class Cancelled(Exception):
    """Raised inside the worker (from the progress callback) once its request has given up."""


class _Job:
    """Progress of one run, written by the worker thread and read by the request thread."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0
        self.cancel = threading.Event()

    def progress(self, done: int, total: int) -> None:
        # The inference loop calls this between tiles, which is where abandoned work stops.
        if self.cancel.is_set():
            raise Cancelled
        self.done, self.total = int(done), int(total)


def precisions() -> list[str]:
    """Precisions worth offering on this machine (fp16 only pays off, and is only checked, on CUDA)."""
    import torch

    return ["auto", "fp32", "bf16"] + (["fp16"] if torch.cuda.is_available() else [])


def _safe_name(name: str | None) -> tuple[str, str]:
    """(file name for messages, stem for output names) from a client-supplied name, reduced to safe characters."""
    p = Path(name or "image")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", p.stem).strip("_")[:60] or "image"
    suffix = re.sub(r"[^A-Za-z0-9]+", "", p.suffix)[:5]
    return (f"{stem}.{suffix}" if suffix else stem), stem


class Runner:
    """Holds the limits, the loaded models and the one compute slot shared by every tab."""

    def __init__(self, settings: AppSettings, out_root: Path) -> None:
        self.settings = settings
        self.out_root = Path(out_root)
        self.upload_root = Path(out_root).resolve()
        self.infos = {info.name: info for info in catalog.list_weights()}
        self._models: OrderedDict[tuple[str, str, int | None], infer.Model] = OrderedDict()
        self._models_lock = threading.Lock()
        self._cards: dict[str, Card | None] = {}
        self._compute = threading.Lock()  # held by the worker, so abandoned work still blocks the next run

    # --- Models ---

    def models_for(self, task: str) -> list[catalog.WeightsInfo]:
        return [info for info in self.infos.values() if info.task == task]

    def _model(self, name: str, precision: str, tile: int | None) -> infer.Model:
        key = (name, precision, tile)
        with self._models_lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        # Releases go by name (the catalog converts and checksums them); other weights by their listed file,
        # so a request can never reach a file the catalog did not list.
        info = self.infos[name]
        source = name if name in catalog.RELEASES or info.path is None else info.path
        engine = self.settings.engine if info.task in ("upscale", "translate") else "torch"
        model = infer.load(source, device="auto", precision=precision, tile=tile, engine=engine)
        with self._models_lock:
            self._models[key] = model
            while len(self._models) > _MODEL_CACHE_SIZE:
                self._models.popitem(last=False)
        return model

    def check_choice(self, task: str, name: Any, precision: Any, tile: Any) -> tuple[str, str, int | None]:
        """The request's model options, refused unless they are among the offered choices."""
        if not isinstance(name, str) or name not in self.infos or self.infos[name].task != task:
            raise fail(f"Unknown {task} model {str(name)[:80]!r}; pick one from the list.")
        if precision not in precisions():
            raise fail(f"Precision must be one of {', '.join(precisions())}.")
        if str(tile) not in TILES:
            raise fail(f"Tile size must be one of {', '.join(TILES)}.")
        self.check_weights(name)
        return name, precision, TILES[str(tile)]

    def check_weights(self, name: str) -> None:
        """Check a model's weights file (card, arch ranges, every tensor shape, memory budget; nothing is
        allocated) here, in the request, so the worker never starts building a network it cannot finish."""
        info = self.infos[name]
        if info.broken:
            raise fail(f"{name} cannot be used: {info.broken}")
        if name in catalog.RELEASES or info.path is None:
            return  # converted by the catalog from the pinned, checksummed release
        with self._models_lock:
            if any(key[0] == name for key in self._models):
                return
        try:
            check_weights_file(info.path)
        except Img2ImgError as e:
            raise fail(str(e)) from None

    # --- Uploads ---

    def read_upload(self, payload: Any) -> tuple[LoadedImage, str]:
        """Decode an uploaded image after checking its size from the header. Returns (image, safe stem)."""
        if not payload:
            raise fail("Upload an image first (PNG, JPEG, WebP, TIFF, BMP or GIF).")
        raw = payload.get("path") if isinstance(payload, dict) else payload
        if not isinstance(raw, str | Path) or "\0" in str(raw):
            raise fail("That upload is not available any more; upload the image again.")
        path = Path(raw).resolve()
        if not path.is_relative_to(self.upload_root) or not path.is_file():
            raise fail("That upload is not available any more; upload the image again.")
        orig = payload.get("orig_name") if isinstance(payload, dict) else None
        orig = orig if isinstance(orig, str) else None
        name, stem = _safe_name(orig or path.name)
        limit_mb = self.settings.max_file_mb
        if path.stat().st_size > limit_mb * 2**20:
            raise fail(f"{name}: the file is larger than the {limit_mb:g} MB limit of this app.")
        data = path.read_bytes()
        try:
            try:
                w, h = probe_size(data)
            except ImageError:
                w = h = 0  # unreadable header: decode_image below says so, naming the file
            if w * h > self.settings.max_pixels:
                raise fail(
                    f"{name}: {w}x{h} = {w * h:,} pixels is more than this app accepts "
                    f"({self.settings.max_pixels:,}); shrink it first, or run `img2img upscale` locally."
                )
            return decode_image(data, name=name, max_pixels=self.settings.max_pixels, animated="first"), stem
        except Img2ImgError as e:
            raise fail(str(e)) from None

    # --- Running ---

    def run(self, work: Callable[[_Job], T], progress: Any = None, desc: str = "") -> T:
        """Run `work` in a worker thread; give up with a `gr.Error` after the deadline and stop the work."""
        timeout = self.settings.timeout
        deadline = time.monotonic() + timeout
        job, box = _Job(), {}

        def target() -> None:
            try:
                if not self._compute.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise Cancelled
                try:
                    job.progress(0, 0)
                    box["value"] = work(job)
                finally:
                    self._compute.release()
            except BaseException as e:  # handed over to the request thread below
                box["error"] = e

        worker = threading.Thread(target=target, name="img2img-app-work", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            if progress is not None and job.total:
                progress((job.done, job.total), desc=desc, unit="tiles")
            if worker.is_alive() and time.monotonic() >= deadline:
                job.cancel.set()
                raise fail(
                    f"Stopped after the {timeout:g} s time limit of this app. Try a smaller image, "
                    "the fast model, or run `img2img upscale` locally for big jobs."
                )
        if "error" in box:
            raise user_error(box["error"], timeout)
        return box["value"]

    # --- Tasks (one method each; the UI binds them to buttons and API names) ---

    def upscale(
        self,
        upload: Any,
        model_name: str,
        tile: str = "auto",
        precision: str = "auto",
        alpha_mode: str = "model",
        outscale: float | None = None,
        progress: Any = gr.Progress(),  # noqa: B008 - Gradio reads the default to inject a tracker
    ) -> tuple[tuple[str, str], str, str, str]:
        """Super-resolve one upload. Returns ((before, after) for the slider, PNG path, status, model card)."""
        name, precision, tile_px = self.check_choice("upscale", model_name, precision, tile)
        if alpha_mode not in ALPHA_MODES:
            raise fail(f"Alpha mode must be one of {', '.join(ALPHA_MODES)}.")
        scale = self.infos[name].scale
        try:
            factor = float(outscale if outscale is not None else scale)
        except (TypeError, ValueError):
            raise fail("Output scale must be a number.") from None
        if not 1.0 <= factor <= scale:
            raise fail(f"Output scale must be between 1 and {scale} for {name}.")
        img, stem = self.read_upload(upload)
        x = to_model_input(img)

        def work(job: _Job) -> tuple[infer.Model, np.ndarray]:
            model = self._model(name, precision, tile_px)
            kept = None if factor == scale else factor  # None: the network's own scale, no resize
            return model, model(x, alpha_mode=alpha_mode, outscale=kept, progress=job.progress)

        start = time.monotonic()
        model, out = self.run(work, progress, desc=f"Upscaling with {name}")
        return self._respond(img, out, f"{stem}_x{factor:g}", name, model, time.monotonic() - start)

    def translate(
        self,
        upload: Any,
        model_name: str,
        tile: str = "auto",
        precision: str = "auto",
        progress: Any = gr.Progress(),  # noqa: B008 - Gradio reads the default to inject a tracker
    ) -> tuple[tuple[str, str], str, str, str]:
        """Translate one upload with a pix2pix/CycleGAN generator; same outputs as `upscale`."""
        name, precision, tile_px = self.check_choice("translate", model_name, precision, tile)
        img, stem = self.read_upload(upload)
        x = to_model_input(img)

        def work(job: _Job) -> tuple[infer.Model, np.ndarray]:
            model = self._model(name, precision, tile_px)
            # Generators know nothing of transparency: carry alpha over resized, not through the network.
            return model, model(x, alpha_mode="bicubic", progress=job.progress)

        start = time.monotonic()
        model, out = self.run(work, progress, desc=f"Translating with {name}")
        return self._respond(img, out, f"{stem}_{name}", name, model, time.monotonic() - start)

    def synthesize(
        self, editor: Any, model_name: str, style: Any = None, seed: Any = 0,
        progress: Any = gr.Progress(),  # noqa: B008 - Gradio reads the default to inject a tracker
    ) -> tuple[tuple[str, str], str, str, str]:  # fmt: skip
        """Paint tab: a painted (or uploaded) colour label map -> photo; see `img2img.app.generative`."""
        from img2img.app import generative

        return generative.synthesize(self, editor, model_name, style, seed, progress)

    def generate(
        self, prompt: Any, model_name: str, n: Any = 4, seed: Any = 0, stage: Any = "last",
        progress: Any = gr.Progress(),  # noqa: B008 - Gradio reads the default to inject a tracker
    ) -> tuple[list, str, str]:  # fmt: skip
        """Text tab: a prompt -> a gallery of images; see `img2img.app.generative`."""
        from img2img.app import generative

        return generative.generate(self, prompt, model_name, n, seed, stage, progress)

    def _respond(
        self, img: LoadedImage, out: np.ndarray, out_stem: str, name: str, model: infer.Model, seconds: float
    ) -> tuple[tuple[str, str], str, str, str]:
        d = self.new_output_dir()
        colour, notes = img.rgb.shape[2], list(img.warnings)
        after = save_result(d / f"{out_stem}.png", out, colour, img.bit_depth, img.icc_profile)
        if out.shape[2] == colour:  # alpha dropped (alpha_mode "none"): compare without it too
            img = LoadedImage(rgb=img.rgb, bit_depth=img.bit_depth)
        before = save_before(d / "before.png", img, (out.shape[1], out.shape[0]))
        status = [
            f"**{img.width}×{img.height} → {out.shape[1]}×{out.shape[0]}** with {name} ({model.precision}"
            f"{infer.runtime_label(model)}), "
            f"{img.bit_depth}-bit{' with alpha' if out.shape[2] > colour else ''} PNG, {seconds:.1f} s"
        ]
        status += [f"Note: {w}" for w in notes]
        card = card_markdown(name, self.infos.get(name), model.card)
        return (str(before), str(after)), str(after), "\n\n".join(status), card

    def card(self, name: str) -> Card | None:
        """The card of a catalog model from its weights header (no network is built), or None."""
        if name not in self._cards:
            info = self.infos.get(name)
            card = None
            if info is not None and info.path and str(info.path).endswith(".safetensors"):
                try:
                    card = read_card(info.path)
                except Img2ImgError:  # the panel falls back to the catalog entry; a run reports the error
                    card = None
            self._cards[name] = card
        return self._cards[name]

    def describe(self, model_name: str) -> str:
        """Model info panel for a model picked in the UI."""
        info = self.infos.get(model_name) if isinstance(model_name, str) else None
        return card_markdown(model_name, info, self.card(model_name)) if info else ""

    def new_output_dir(self) -> Path:
        # Results go straight into Gradio's cache folder so its cleanup (`delete_cache`) removes them.
        d = self.out_root / f"img2img-{uuid.uuid4().hex}"
        d.mkdir(parents=True)
        return d


def fail(message: str) -> gr.Error:
    """A message for the user's error popup. Gradio renders it as HTML, and it may quote request values."""
    return gr.Error(html.escape(message, quote=False), duration=None, print_exception=False)


def user_error(e: BaseException, timeout: float) -> gr.Error:
    """One readable message for any failure; unexpected ones are logged with their traceback."""
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, Cancelled):
        return fail(f"The server was still busy after {timeout:g} s; please try again in a moment.")
    if isinstance(e, Img2ImgError):
        return fail(str(e))
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        return fail("Ran out of memory: choose a smaller tile size or a smaller image.")
    log.error("request failed", exc_info=e)
    return fail("Something went wrong on the server while processing this image (see the server log).")


# --- Arrays ---


def to_model_input(img: LoadedImage) -> np.ndarray:
    """HxWxC for `Model`: colour channels, then alpha if the image has one."""
    return img.rgb if img.alpha is None else np.concatenate([img.rgb, img.alpha[..., None]], axis=2)


def save_result(path: Path, out: np.ndarray, colour: int, bit_depth: int, icc: bytes | None = None) -> Path:
    """Write a model output (same channel layout as its input) as a lossless PNG."""
    alpha = out[..., colour] if out.shape[2] > colour else None
    write_image(path, out[..., :colour], alpha=alpha, bit_depth=bit_depth, icc_profile=icc)
    return path


def save_before(path: Path, img: LoadedImage, size: tuple[int, int]) -> Path:
    """The input resized (bicubic) to the output's (width, height), so the slider compares like with like."""
    import cv2

    planes = to_model_input(img)
    if planes.shape[1::-1] != size:
        planes = cv2.resize(planes, size, interpolation=cv2.INTER_CUBIC)
        planes = np.clip(planes.reshape(size[1], size[0], -1), 0.0, 1.0)
    return save_result(path, planes, img.rgb.shape[2], 8)


def card_markdown(name: str, info: catalog.WeightsInfo | None, card: Card | None = None) -> str:
    """The model info panel: what it is, what it was trained on, how it measures, where it came from."""
    lines = [f"### {name}"]
    description = (card.description if card else "") or (info.description if info else "")
    if description:
        lines.append(description)
    facts = []
    if info is not None:
        facts += [f"**task** {info.task}", f"**scale** x{info.scale}", f"**arch** {info.arch}"]
        if info.params:
            facts.append(f"**parameters** {info.params:,}")
    if card is not None and card.extra.get("direction"):
        facts.append(f"**direction** {card.extra['direction']}")
    lines.append(" · ".join(facts))
    if card is not None and card.training:
        shown = {k: v for k, v in card.training.items() if k not in _TRAINING_DETAIL}
        lines.append("**training** " + "; ".join(f"{k}: {_short(v)}" for k, v in shown.items()))
    if card is not None and card.metrics:
        lines.append(_metrics_markdown(card.metrics))
    source = (card.source if card else "") or (info.source if info else "")
    if source:
        lines.append(f"**source** {source}")
    if card is not None and card.license:
        lines.append(f"**licence** {card.license}")
    return "\n\n".join(line for line in lines if line)


def _numbers(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_short(v)}" for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool))


def _metrics_markdown(metrics: dict[str, Any]) -> str:
    """A list item per named evaluation (`Set5_x4: psnr_y 29.54, ssim_y 0.8395`), then the last validation's
    numbers; protocols (long strings) stay in the card file."""
    named = [f"- {k}: {_numbers(v)}" for k, v in metrics.items() if isinstance(v, dict) and _numbers(v)]
    last = _numbers(metrics)
    return "\n".join(["**metrics**", *named, *([f"- last validation: {last}"] if last else [])])


_TRAINING_DETAIL = ("config", "checkpoint", "network", "steps_timed")  # in the card file, too long for the panel


def _short(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."
