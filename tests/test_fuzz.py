"""Bounded fuzzing of every place untrusted bytes enter: the image decoder (headers, truncation, chunk
corruption, huge dimensions), the safetensors header and weights card, YAML configs and overrides, ncnn
.param files, the app's upload handlers, label and instance maps, prompt files and .npy embeddings.

Property: every input ends in a result or a typed project error (Img2ImgError, gr.Error in the app) with a
message, never another exception; each example is quick and memory stays bounded. Hypothesis runs a
fixed number of derandomised cases per entry point, so CI sees the same inputs every time."""

from __future__ import annotations

import io
import json
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from img2img.errors import Img2ImgError

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "weights" / "esrgan-small-x4.safetensors"
FUZZ = settings(
    max_examples=60,
    deadline=10_000,  # ms per example: a hang or a very slow path fails
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
MEMORY_BOUND_MB = 400  # growth of the process's peak RSS over one fuzz test


@pytest.fixture(autouse=True)
def bounded_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < MEMORY_BOUND_MB, f"peak memory grew by {grown:.0f} MB"


def typed(fn, *args, errors: tuple[type[BaseException], ...] = (Img2ImgError,), **kwargs):
    """Call fn; a typed error with a message is an acceptable outcome, anything else propagates."""
    try:
        return fn(*args, **kwargs)
    except errors as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"
        return e


# --- Mutations shared by the byte-level fuzzers ---


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "overwrite", "dup"]))
        n = len(data)
        at = draw(st.integers(0, max(0, n - 1)))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip" and n:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "overwrite":
            chunk = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80"]))
            data[at : at + len(chunk)] = chunk
        elif kind == "dup" and n:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


# --- Images ---


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _image_seeds() -> list[bytes]:
    import cv2

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (8, 8), dtype=np.uint16)
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    p = Image.fromarray(rgb).convert("P")
    p.info["transparency"] = 0
    seeds = [
        _encode(rgb, "PNG"), _encode(rgba, "PNG"), _encode(grey16, "PNG"), _encode(rgb, "JPEG", quality=80),
        _encode(rgb, "TIFF"), _encode(rgba, "TIFF", compression="tiff_deflate"), _encode(rgb, "BMP"),
        _encode(rgb, "WEBP"), gif.getvalue(),
        cv2.imencode(".tif", rng.integers(0, 65536, (6, 5, 3), np.uint16))[1].tobytes(),
        cv2.imencode(".png", rng.integers(0, 65536, (6, 5, 4), np.uint16))[1].tobytes(),
    ]  # fmt: skip
    buf = io.BytesIO()
    p.save(buf, format="PNG")
    return [*seeds, buf.getvalue()]


IMAGE_SEEDS = _image_seeds()


def _png_with_size(width: int, height: int, bits: int = 8, colour: int = 2) -> bytes:
    """A PNG whose IHDR (with a correct CRC) claims width x height, followed by a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _check_image(result, limit: int) -> None:
    from img2img.io.images import LoadedImage

    if isinstance(result, LoadedImage):
        h, w = result.rgb.shape[:2]
        assert 0 < h * w <= limit and result.rgb.dtype == np.float32
        assert np.isfinite(result.rgb).all() and result.rgb.min() >= 0 and result.rgb.max() <= 1


@FUZZ
@given(mutated(IMAGE_SEEDS))
def test_image_decoder_survives_damaged_files(data: bytes) -> None:
    from img2img.io.images import decode_image

    _check_image(typed(decode_image, data, name="fuzz", max_pixels=1_000_000, animated="first"), 1_000_000)


@FUZZ
@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.sampled_from([(8, 2), (16, 0), (8, 6), (1, 0), (8, 3)]))
def test_image_decoder_refuses_huge_dimensions_from_the_header(width: int, height: int, kind) -> None:
    from img2img.errors import ImageError
    from img2img.io.images import decode_image, probe_size

    data = _png_with_size(width, height, *kind)
    result = typed(decode_image, data, name="fuzz", max_pixels=100_000)
    _check_image(result, 100_000)
    if width * height > 100_000:
        assert isinstance(result, ImageError)
    typed(probe_size, data)


MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP", b"BM",
          b"GIF89a", b"II+\x00", b"MM\x00+"]  # fmt: skip


@FUZZ
@given(st.binary(max_size=64), st.sampled_from(MAGICS))
def test_image_decoder_survives_random_bytes_behind_a_magic(tail: bytes, magic: bytes) -> None:
    from img2img.io.images import decode_image

    _check_image(typed(decode_image, magic + tail, name="fuzz", max_pixels=100_000), 100_000)


# --- Safetensors header and weights card ---


def _header_seed() -> tuple[bytes, bytes]:
    raw = SMALL.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw[8 : 8 + n], raw[8 + n :]


HEADER, TENSORS = _header_seed()


@FUZZ
@given(mutated([HEADER]), st.integers(-(2**40), 2**40))
def test_safetensors_header_parser(raw: bytes, length_delta: int) -> None:
    from img2img.weights.validate import Header, parse_header

    # The data after the header may be shorter or longer than its offsets say (truncated or padded files).
    result = typed(parse_header, raw, max(0, len(TENSORS) + length_delta), "fuzz")
    assert isinstance(result, Header | Img2ImgError)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
CARD = json.loads(json.loads(HEADER)["__metadata__"]["img2img.card"])
CARD_KEYS = sorted(CARD) + ["inputs", "output", "networks"]
ARCH_KEYS = sorted(CARD["arch_kwargs"])


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(CARD_KEYS), JSON), max_size=3),
    st.lists(st.tuples(st.sampled_from(ARCH_KEYS), JSON | st.integers(0, 10**7)), max_size=2),
    st.sampled_from(["upscale", "translate", "synthesize", "generate"]),
)
def test_weights_cards_end_in_a_model_or_a_weights_error(tmp_path_factory, fields, kwargs, task) -> None:
    """The real tensors with a card whose fields and arch kwargs were replaced by arbitrary JSON values."""
    import img2img
    from img2img.weights.format import CARD_KEY

    card = json.loads(json.dumps(CARD))
    if task != "upscale":
        card["task"] = task
    for k, v in fields:
        card[k] = v
    for k, v in kwargs:
        if isinstance(card["arch_kwargs"], dict):
            card["arch_kwargs"][k] = v
    meta = json.dumps(card, allow_nan=True)
    header = json.loads(HEADER)
    header["__metadata__"] = {CARD_KEY: meta}
    text = json.dumps(header).encode()
    path = tmp_path_factory.mktemp("card") / "w.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + TENSORS)
    typed(img2img.load, path, device="cpu")


@FUZZ
@given(mutated([len(HEADER).to_bytes(8, "little") + HEADER + TENSORS[:4096]]))
def test_weights_files_with_damaged_bytes(tmp_path_factory, data: bytes) -> None:
    from img2img.weights.validate import check_weights_file

    path = tmp_path_factory.mktemp("st") / "w.safetensors"
    path.write_bytes(data)
    typed(check_weights_file, path)


# --- YAML configs and overrides ---

CONFIGS = sorted((REPO / "configs").glob("*/*.yaml"))
YAML_SEEDS = [p.read_bytes() for p in CONFIGS[:6]] + [b"a: &x [*x]\n", b"- 1\n- 2\n", b"train: {steps: 1e9}\n"]
YAML_BITS = [b": ", b"- ", b"{", b"}", b"[", b"&a ", b"*a", b"!!python/object:os.system ", b"\t", b"\n  ", b"? ", b"|"]


@FUZZ
@given(mutated(YAML_SEEDS), st.lists(st.sampled_from(YAML_BITS), max_size=4))
def test_config_loader(tmp_path_factory, data: bytes, extra: list[bytes]) -> None:
    from img2img.train.config import load_config

    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(data + b"".join(extra))
    typed(load_config, path)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "train.steps",
                    "train.batch_size",
                    "model.G",
                    "model.G.nb",
                    "data",
                    "train",
                    "x.y",
                    "train.ema.decay",
                    "train.resume",
                    "train.overwrite",
                    "",
                    "a..b",
                ]
            ),
            st.sampled_from(["=", ""]),
            st.text(max_size=20)
            | st.sampled_from(
                [
                    "1e400",
                    "-1",
                    "[1, 2]",
                    "{arch: RRDBNet, nb: 100000}",
                    "!!python/name:os.system",
                    "&a [*a]",
                    "null",
                    "nan",
                ]
            ),
        ),  # fmt: skip
        max_size=3,
    )
)
def test_config_overrides(overrides) -> None:
    from img2img.train.config import load_config

    typed(load_config, CONFIGS[0], ["".join(o) for o in overrides])


# --- ncnn .param ---


def _param_seed() -> str:
    """A small SRVGGNetCompact-shaped ncnn graph (conv -> prelu x2 -> conv -> pixelshuffle)."""
    lines = [
        "7767517",
        "6 6",
        "Input in 0 1 data",
        "Convolution conv0 1 1 data c0 0=8 1=3 4=1 5=1 6=216",
        "PReLU prelu0 1 1 c0 p0 0=8",
        "Convolution conv1 1 1 p0 c1 0=48 1=3 4=1 5=1 6=3456",
        "PixelShuffle ps 1 1 c1 up 0=4",
        "BinaryOp add 1 1 up output 0=0 -23301=2,1.0,2.0",
    ]
    return "\n".join(lines) + "\n"


PARAM = _param_seed()
PARAM_BITS = ["inf", "nan", "-1", "1e400", "0=-5", "-23301=99999999999,1", "-23301=inf,1", "=", "6=-1", "99999999999",
              "0=inf", "-23301=nan", "0=1e999", "1=-0"]  # fmt: skip


@FUZZ
@given(mutated([PARAM.encode()]), st.lists(st.tuples(st.integers(0, 60), st.sampled_from(PARAM_BITS)), max_size=3))
def test_ncnn_param_parser(tmp_path_factory, data: bytes, swaps) -> None:
    from img2img.weights.convert.ncnn import parse_param, read_ncnn

    tokens = data.decode("ascii", "replace").replace("\n", " \n ").split(" ")
    for at, bit in swaps:
        if at < len(tokens) and tokens[at] != "\n":
            tokens[at] = bit
    folder = tmp_path_factory.mktemp("ncnn")
    param = folder / "m.param"
    param.write_text(" ".join(tokens), encoding="ascii", errors="replace")
    (folder / "m.bin").write_bytes(np.zeros(1000, np.float32).tobytes())
    typed(parse_param, param)
    typed(read_ncnn, param, folder / "m.bin")


LAYER_TYPES = ["Input", "Convolution", "PReLU", "PixelShuffle", "BinaryOp", "Concat", "Eltwise", "Interp", "Split", "X"]
PARAM_VALUES = ["1", "8", "0", "-1", "inf", "nan", "1e400", "2,1.0,2.0", "inf,1", "99999999999,1", "-5,1", "a", ""]


@st.composite
def layer_line(draw) -> str:
    n_in, n_out = draw(st.sampled_from([0, 1, 2, -1, 10**12])), draw(st.sampled_from([0, 1, 2, -1]))
    blobs = [draw(st.sampled_from(["data", "c0", "p0", "x"])) for _ in range(draw(st.integers(0, 3)))]
    params = [
        f"{draw(st.sampled_from(['0', '1', '4', '5', '6', '9', '-23301', '-23300', 'k', '']))}="
        f"{draw(st.sampled_from(PARAM_VALUES))}"
        for _ in range(draw(st.integers(0, 4)))
    ]
    return " ".join([draw(st.sampled_from(LAYER_TYPES)), "n", str(n_in), str(n_out), *blobs, *params])


@FUZZ
@given(st.lists(layer_line(), min_size=1, max_size=6), st.sampled_from(["", "x", "-3", "1e9"]))
def test_ncnn_param_lines(tmp_path_factory, lines: list[str], count: str) -> None:
    from img2img.weights.convert.ncnn import parse_param, read_ncnn

    folder = tmp_path_factory.mktemp("ncnn")
    param = folder / "m.param"
    param.write_text("\n".join(["7767517", f"{count or len(lines)} 9", *lines]) + "\n")
    (folder / "m.bin").write_bytes(np.zeros(64, np.float32).tobytes())
    typed(parse_param, param)
    typed(read_ncnn, param, folder / "m.bin")


# --- The app's upload handlers (called directly) ---


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    pytest.importorskip("gradio")
    from img2img.app import AppSettings
    from img2img.app.handlers import Runner

    root = tmp_path_factory.mktemp("app")
    return Runner(AppSettings(max_pixels=4096, max_file_mb=0.05, timeout=20), root)


PAYLOAD_NAMES = st.text(max_size=30) | st.sampled_from(["../../etc/passwd", "a.png\0.exe", "<script>.png", "x" * 300])


@FUZZ
@given(
    mutated(IMAGE_SEEDS),
    PAYLOAD_NAMES,
    st.sampled_from(["dict", "str", "none", "int", "list", "dict-no-path", "outside"]),
)
def test_app_read_upload(runner, data: bytes, name: str, shape: str) -> None:
    import gradio as gr

    path = runner.upload_root / "up.bin"
    path.write_bytes(data)
    payload = {
        "dict": {"path": str(path), "orig_name": name}, "str": str(path), "none": None, "int": 7, "list": [str(path)],
        "dict-no-path": {"orig_name": name}, "outside": {"path": "/etc/hostname", "orig_name": name},
    }[shape]  # fmt: skip
    result = typed(runner.read_upload, payload, errors=(gr.Error,))
    if not isinstance(result, gr.Error):
        img, stem = result
        assert img.rgb.shape[0] * img.rgb.shape[1] <= 4096 and "/" not in stem and ".." not in stem


@settings(FUZZ, max_examples=25)
@given(
    st.sampled_from([0, 1, 2]),
    st.sampled_from(["esrgan-small-x4", "nope", "", 5, None, "pix2pix-facades-small"]),
    st.sampled_from(["auto", "whole image", "128", "7", None, 3.5]),
    st.sampled_from(["auto", "fp32", "fp64", None]),
    st.sampled_from(["model", "bicubic", "none", "x"]),
    st.sampled_from([None, 1.0, 4, 2.5, "3", "abc", float("nan"), -1, 1e9]),
)
def test_app_upscale_handler(runner, seed_i, model, tile, precision, alpha, outscale) -> None:
    import gradio as gr

    path = runner.upload_root / f"u{seed_i}.png"
    path.write_bytes([_encode(np.full((8, 8, 3), 90, np.uint8), "PNG"), IMAGE_SEEDS[1], b"junk"][seed_i])
    upload = {"path": str(path), "orig_name": "a.png"}
    typed(runner.upscale, upload, model, tile, precision, alpha, outscale, progress=None, errors=(gr.Error,))
    typed(runner.translate, upload, model, tile, precision, progress=None, errors=(gr.Error,))


NUMBERS = [0, 1, 7, -1, "3", "abc", "", None, 2.5, float("nan"), float("inf"), 1e30, 2**70, [1]]


@settings(FUZZ, max_examples=25)
@given(
    st.sampled_from(["composite", "composite-none", "composite-junk", "layers-only", "path", "none", "int", "list"]),
    st.sampled_from(["spade-facades-small", "nope", "", None, 5, "esrgan-small-x4", "stackgan-shapes-small"]),
    st.sampled_from(["none", "photo", "junk", "int", "outside"]),
    st.sampled_from(NUMBERS),
)
def test_app_paint_handler(runner, editor_kind, model, style_kind, seed) -> None:
    """The Paint tab's handler with whatever a client can send: a result or a message, never a traceback."""
    import gradio as gr

    rng = np.random.default_rng(0)
    painting = runner.upload_root / "painting.png"
    painting.write_bytes(_encode(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), "PNG"))
    junk = runner.upload_root / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    editor = {
        "composite": {"composite": str(painting), "layers": [], "background": None},
        "composite-none": {"composite": None, "layers": [], "background": None},
        "composite-junk": {"composite": str(junk), "layers": [str(painting)]},
        "layers-only": {"layers": [str(painting)]}, "path": str(painting), "none": None, "int": 3, "list": [1, 2],
    }[editor_kind]  # fmt: skip
    style = {"none": None, "photo": str(painting), "junk": str(junk), "int": 9, "outside": "/etc/hostname"}[style_kind]
    result = typed(runner.synthesize, editor, model, style, seed, progress=None, errors=(gr.Error,))
    if not isinstance(result, gr.Error):
        (label_path, photo_path), _, status, _ = result
        assert Path(photo_path).is_file() and Path(label_path).is_file() and status


@settings(FUZZ, max_examples=25)
@given(
    st.text(max_size=40) | st.sampled_from(["a red circle on a blue background", "x" * 5000, "\0\n\t", "🙂 circle"]),
    st.sampled_from(["stackgan-shapes-small", "nope", None, "spade-facades-small"]),
    st.sampled_from(NUMBERS),
    st.sampled_from(NUMBERS),
    st.sampled_from(["last", "1", "2", "3", None, 1, "x", 2.0]),
)
def test_app_text_handler(runner, prompt, model, n, seed, stage) -> None:
    """The Text tab's handler with whatever a client can send: a gallery or a message, never a traceback."""
    import gradio as gr

    result = typed(runner.generate, prompt, model, n, seed, stage, progress=None, errors=(gr.Error,))
    if not isinstance(result, gr.Error):
        gallery, status, _ = result
        assert 1 <= len(gallery) <= 8 and all(Path(p).is_file() for p, _ in gallery) and status


# --- Label maps and instance maps ---


def _label_seeds() -> list[bytes]:
    rng = np.random.default_rng(1)
    ids8 = rng.integers(0, 255, (10, 12), dtype=np.uint8)
    ids16 = rng.integers(0, 60000, (10, 12), dtype=np.uint16)
    pal = Image.fromarray(ids8 % 5).convert("P")
    pal.putpalette(sum(([i * 40, 255 - i * 40, 7] for i in range(5)), []))
    out = [_encode(ids8, "PNG"), _encode(ids16, "PNG"), _encode(rng.integers(0, 256, (6, 6, 3), np.uint8), "PNG")]
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    return [*out, buf.getvalue(), _encode(ids8, "JPEG")]


LABEL_SEEDS = _label_seeds()


@FUZZ
@given(
    mutated(LABEL_SEEDS),
    st.integers(1, 300),
    st.none() | st.integers(0, 255),
    st.booleans(),
)
def test_label_and_instance_maps(data: bytes, label_nc: int, dontcare, palette: bool) -> None:
    from img2img.io.labels import LabelSpec, instance_edges, read_instance_map, read_label_map, semantic_input

    spec = LabelSpec(label_nc=label_nc, dontcare=dontcare, instance=True,
                     palette=[(i % 256, (7 * i) % 256, 3) for i in range(label_nc)] if palette else [])  # fmt: skip
    ids = typed(read_label_map, data, spec, max_pixels=10_000)
    inst = typed(read_instance_map, data, max_pixels=10_000)
    if isinstance(ids, np.ndarray):
        assert (
            ids.ndim == 2
            and ((ids >= 0) & (ids < label_nc) | (ids == (dontcare if dontcare is not None else -1))).all()
        )
        if isinstance(inst, np.ndarray) and inst.shape == ids.shape:
            assert instance_edges(inst).shape == ids.shape
            assert semantic_input(ids, spec, inst).shape[0] == spec.semantic_nc


# --- Prompt files and .npy embeddings ---


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8")))
def test_prompt_files(tmp_path_factory, data: bytes) -> None:
    from img2img.infer.jobs import read_prompts

    path = tmp_path_factory.mktemp("p") / "prompts.txt"
    path.write_bytes(data)
    result = typed(read_prompts, path)
    if isinstance(result, list):
        assert result and all(isinstance(p, str) and p.strip() == p and p for p in result)


def _npy_seeds() -> list[bytes]:
    out = []
    for arr in (np.zeros((3, 8), np.float32), np.ones((2, 4), np.float64), np.arange(6, dtype=np.int32).reshape(2, 3),
                np.zeros((2, 2, 2), np.float16), np.array([{"a": 1}], dtype=object)):  # fmt: skip
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        out.append(buf.getvalue())
    return out


NPY_SEEDS = _npy_seeds()


@FUZZ
@given(
    mutated(NPY_SEEDS),
    st.sampled_from([None, 8, 4]),
    st.none() | st.sampled_from(["(99999999999, 99999999)", "(-1, 8)", "(3,8,)", "()", "(2**40,)", "(1, 8)"]),
)
def test_npy_embeddings(tmp_path_factory, data: bytes, dim, shape) -> None:
    from img2img.text import load_embeddings

    if shape is not None:
        data = data.replace(b"(3, 8)", shape.encode(), 1).replace(b"(2, 4)", shape.encode(), 1)
    path = tmp_path_factory.mktemp("npy") / "e.npy"
    path.write_bytes(data)
    result = typed(load_embeddings, path, dim)
    if isinstance(result, np.ndarray):
        assert result.ndim == 2 and result.dtype == np.float32 and np.isfinite(result).all()
