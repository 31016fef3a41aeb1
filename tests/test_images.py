"""img2img.io.images: every reader/writer path, on images the tests make themselves (Pillow, OpenCV, bytes)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import tracemalloc
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from img2img.errors import ImageError, ImageTooLargeError
from img2img.io import images
from img2img.io.images import decode_image, is_image_path, probe_size, read_image, write_image

RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _same_random_images_in_any_order():
    global RNG
    RNG = np.random.default_rng(1234)


SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def as_int(a: np.ndarray, depth: int = 8) -> np.ndarray:
    return np.rint(a * (65535 if depth == 16 else 255)).astype(np.int64)


# --- Round trips: write then read gives identical values ---


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_lossless_round_trip_is_exact(tmp_path, suffix, depth, channels):
    top = 65535 if depth == 16 else 255
    q = RNG.integers(0, top + 1, (7, 11, channels))
    q[0, 0], q[0, 1] = 0, top  # the extremes survive too
    f = (q / top).astype(np.float32)
    colour, alpha = (f[..., :-1], f[..., -1]) if channels in (2, 4) else (f, None)
    path = write_image(tmp_path / f"x{suffix}", colour, alpha, bit_depth=depth, icc_profile=SRGB_ICC)
    img = read_image(path)
    assert img.bit_depth == depth and img.rgb.dtype == np.float32 and img.icc_profile == SRGB_ICC
    assert img.format == ("png" if suffix == ".png" else "tiff") and img.path == str(path)
    n = colour.shape[2]
    stored_as_rgba = suffix == ".tif" and depth == 16 and channels == 2  # documented in write_image
    assert img.mode == ("RGBA" if stored_as_rgba else {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels])
    assert np.array_equal(as_int(img.rgb, depth), np.broadcast_to(q[..., :n], img.rgb.shape))
    if alpha is None:
        assert img.alpha is None
    else:
        assert np.array_equal(as_int(img.alpha, depth), q[..., -1])


@pytest.mark.parametrize("name", ["c.png", "c.tif"])
def test_written_files_read_correctly_by_other_decoders(tmp_path, name):
    q8 = RNG.integers(0, 256, (5, 7, 3))
    q8[0, 0] = (255, 0, 0)  # red stays red: no channel swap anywhere
    p8 = write_image(tmp_path / f"8{name}", q8 / 255)
    assert np.array_equal(np.asarray(Image.open(p8)), q8)
    q16 = RNG.integers(0, 65536, (5, 7, 4))
    p16 = write_image(tmp_path / f"16{name}", q16[..., :3] / 65535, q16[..., 3] / 65535, bit_depth=16)
    bgra = cv2.imread(str(p16), cv2.IMREAD_UNCHANGED)
    assert bgra.dtype == np.uint16 and np.array_equal(bgra[..., [2, 1, 0, 3]], q16)


def test_every_16_bit_value_survives_png_and_tiff(tmp_path):
    values = np.arange(65536, dtype=np.float64).reshape(256, 256) / 65535
    rgb = np.stack([values, values[::-1], values.T], axis=2)
    for name in ("all.png", "all.tif"):
        img = read_image(write_image(tmp_path / name, rgb, bit_depth=16))
        assert img.mode == "RGB" and np.array_equal(as_int(img.rgb, 16), as_int(rgb, 16))


def test_16_bit_rgb_png_made_by_opencv_keeps_16_bits(tmp_path):
    q = RNG.integers(0, 65536, (9, 5, 3), dtype=np.uint16)
    q[0, 0] = (1, 2, 65534)  # values an 8-bit reduction would merge
    cv2.imwrite(str(tmp_path / "cv.png"), q[..., ::-1])  # OpenCV wants BGR
    img = read_image(tmp_path / "cv.png")
    assert img.bit_depth == 16 and img.mode == "RGB"
    assert np.array_equal(as_int(img.rgb, 16), q)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".bmp", ".tif"])
def test_8_bit_round_trip_exact_in_lossless_formats(tmp_path, suffix):
    q = RNG.integers(0, 256, (6, 10, 3))
    img = read_image(write_image(tmp_path / f"x{suffix}", q / 255, quality=100))
    assert img.bit_depth == 8 and np.array_equal(as_int(img.rgb), q)


def test_8_bit_images_keep_their_samples_and_make_floats_on_demand(tmp_path):
    """An 8-bit image without alpha keeps its uint8 samples (oriented as displayed) and makes its
    float32 pixels only when read: the upscale engine takes the samples, so a large input is not
    also held in float32. With alpha or 16 bits there are no samples."""
    stored, kw = _orientation_source(6)  # "rotate 90 clockwise to display"
    data = pil_bytes(Image.fromarray(stored), "PNG", **kw)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    img = decode_image(data)
    assert img._rgb is None and (img.width, img.height, img.mode) == (4, 6, "RGB")  # nothing in float yet
    assert img.samples.dtype == np.uint8 and img.samples.flags.writeable
    assert np.array_equal(img.samples, expected) and np.array_equal(as_int(img.rgb), expected)
    assert img.rgb.dtype == np.float32
    q = stored / 255
    with_alpha = read_image(write_image(tmp_path / "a.png", q, q[..., 0]))
    deep = read_image(write_image(tmp_path / "d.png", q, bit_depth=16))
    assert with_alpha.samples is None and deep.samples is None


def test_lossless_webp_keeps_colour_under_transparent_pixels(tmp_path):
    q, a = RNG.integers(0, 256, (6, 10, 3)), RNG.integers(0, 256, (6, 10))
    a[:2] = 0  # fully transparent rows: lossless WebP must not rewrite their colour
    img = read_image(write_image(tmp_path / "a.webp", q / 255, a / 255, quality=100))
    assert img.mode == "RGBA" and np.array_equal(as_int(img.rgb), q) and np.array_equal(as_int(img.alpha), a)


def test_values_are_clipped_and_rounded_not_truncated(tmp_path):
    k = np.arange(10, 250, 10, dtype=np.float64)
    rgb = np.stack([(k + 0.4) / 255, (k + 0.6) / 255, np.linspace(-0.5, 1.5, k.size)], axis=1)[None]
    got = as_int(read_image(write_image(tmp_path / "r.png", rgb)).rgb)
    assert np.array_equal(got[0, :, 0], k) and np.array_equal(got[0, :, 1], k + 1)
    assert got[0, 0, 2] == 0 and got[0, -1, 2] == 255


def test_grey_stays_one_channel_and_jpeg_is_close(tmp_path):
    grey = np.tile(np.linspace(0, 1, 32), (16, 1))
    img = read_image(write_image(tmp_path / "g.jpg", grey, quality=95))
    assert img.mode == "L" and img.rgb.shape == (16, 32, 1) and img.format == "jpeg"
    assert np.abs(img.rgb[..., 0] - grey).max() < 3 / 255


def test_jpeg_webp_bmp_store_8_bits_even_when_16_asked(tmp_path):
    rgb = RNG.random((8, 8, 3))
    for name in ("a.jpg", "a.webp", "a.bmp"):
        assert read_image(write_image(tmp_path / name, rgb, bit_depth=16, quality=100)).bit_depth == 8


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_is_preserved(tmp_path, suffix):
    img = read_image(write_image(tmp_path / f"c{suffix}", RNG.random((5, 7, 3)), icc_profile=SRGB_ICC))
    assert img.icc_profile == SRGB_ICC


# --- Modes and metadata of files made elsewhere ---


def _orientation_source(orientation: int) -> tuple[np.ndarray, dict]:
    stored = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, {"exif": exif.tobytes()}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pillow(orientation):
    stored, kw = _orientation_source(orientation)
    data = pil_bytes(Image.fromarray(stored), "PNG", **kw)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    img = decode_image(data)
    assert img.rgb.shape == expected.shape and np.array_equal(as_int(img.rgb), expected)
    jpeg = pil_bytes(Image.fromarray(stored), "JPEG", quality=100, **kw)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(jpeg))))
    assert np.array_equal(as_int(decode_image(jpeg).rgb), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_tag_applied_once_at_8_and_16_bits(orientation):
    for stored, top in ((RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8), 255),
                        (RNG.integers(0, 65536, (4, 6), dtype=np.uint16), 65535)):  # fmt: skip
        data = pil_bytes(Image.fromarray(stored), "TIFF", tiffinfo={274: orientation})
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
        img = decode_image(data)
        got = np.rint(img.rgb * top).astype(np.int64)
        assert img.bit_depth == (16 if top == 65535 else 8)
        assert np.array_equal(got[..., 0] if stored.ndim == 2 else got, expected)


def test_exif_rotate_and_mirror_by_hand():
    stored, kw = _orientation_source(6)  # "rotate 90 clockwise to display"
    img = decode_image(pil_bytes(Image.fromarray(stored), "PNG", **kw))
    assert (img.width, img.height) == (4, 6)
    assert np.array_equal(as_int(img.rgb[0, -1]), stored[0, 0])  # stored top-left -> top-right
    assert np.array_equal(as_int(img.rgb[-1, -1]), stored[0, -1])
    stored, kw = _orientation_source(2)  # mirror
    img = decode_image(pil_bytes(Image.fromarray(stored), "PNG", **kw))
    assert np.array_equal(as_int(img.rgb), stored[:, ::-1])


def test_exif_orientation_on_16_bit_png():
    q = RNG.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    data = cv2.imencode(".png", q[..., ::-1])[1].tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    data = data[:33] + png_chunk(b"eXIf", exif.tobytes()[6:]) + data[33:]  # right after IHDR
    img = decode_image(data)
    assert img.bit_depth == 16 and np.array_equal(as_int(img.rgb, 16), np.rot90(q, -1))


def test_palette_with_transparency_becomes_rgba():
    pal = Image.new("P", (5, 4))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((2, 1), 1)
    for fmt in ("PNG", "GIF"):
        img = decode_image(pil_bytes(pal, fmt, transparency=0))
        assert img.mode == "RGBA" and img.alpha[0, 0] == 0 and img.alpha[1, 2] == 1
        assert np.array_equal(img.rgb[1, 2], [0, 1, 0])
    assert decode_image(pil_bytes(pal, "PNG")).mode == "RGB"  # no transparency: plain colour


def test_grey_grey_alpha_one_bit_and_grey_transparency():
    grey = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    img = decode_image(pil_bytes(Image.fromarray(grey), "PNG"))
    assert img.mode == "L" and np.array_equal(as_int(img.rgb[..., 0]), grey)
    la = RNG.integers(0, 256, (6, 5, 2), dtype=np.uint8)
    img = decode_image(pil_bytes(Image.fromarray(la), "PNG"))
    assert img.mode == "LA" and np.array_equal(as_int(img.alpha), la[..., 1])
    bits = Image.fromarray(grey > 127)
    for fmt in ("PNG", "TIFF", "BMP"):
        img = decode_image(pil_bytes(bits, fmt))
        assert img.mode == "L" and img.bit_depth == 8 and np.array_equal(img.rgb[..., 0], grey > 127)
    img = decode_image(pil_bytes(Image.fromarray(grey), "PNG", transparency=int(grey[0, 0])))
    assert img.mode == "LA" and img.alpha[0, 0] == 0


def test_16_bit_grey_uses_i16_and_keeps_values():
    q = RNG.integers(0, 65536, (6, 5), dtype=np.uint16)
    for fmt in ("PNG", "TIFF"):
        img = decode_image(pil_bytes(Image.fromarray(q), fmt))
        assert img.mode == "L" and img.bit_depth == 16 and np.array_equal(as_int(img.rgb[..., 0], 16), q)


@pytest.mark.parametrize("icc", [None, b"not a real profile"])
def test_cmyk_jpeg_becomes_rgb_with_warning(icc):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    img = decode_image(pil_bytes(cmyk, "JPEG", quality=100, **({"icc_profile": icc} if icc else {})))
    assert img.mode == "RGB" and np.allclose(img.rgb[4, 4], [1, 0, 0], atol=0.02)
    assert img.icc_profile is None  # a CMYK profile would be wrong for the RGB pixels
    assert any("CMYK converted to RGB without a usable ICC profile" in w for w in img.warnings)


@pytest.mark.parametrize("depth", [8, 16])
def test_premultiplied_tiff_alpha_is_returned_straight(tmp_path, depth):
    colour, alpha = np.full((4, 4, 3), 0.8), np.full((4, 4), 0.6)
    path = write_image(tmp_path / "p.tif", colour * alpha[..., None], alpha, bit_depth=depth)
    entry = struct.pack("<HHIH", 338, 3, 1, 2)  # ExtraSamples = 2, unassociated (straight) alpha
    data = path.read_bytes()
    assert data.count(entry) == 1
    img = decode_image(data.replace(entry, struct.pack("<HHIH", 338, 3, 1, 1)))  # 1: associated
    assert img.mode == "RGBA" and img.bit_depth == depth
    assert np.allclose(img.rgb, 0.8, atol=2 / 255) and np.allclose(img.alpha, 0.6, atol=1 / 255)
    assert np.allclose(read_image(path).rgb, 0.48, atol=1 / 255)  # the straight file is left as stored


def test_white_is_zero_16_bit_tiff_and_float_tiff(tmp_path):
    q = np.array([[0, 1000, 65535]], np.uint16)
    data = write_image(tmp_path / "w.tif", q[..., None] / 65535, bit_depth=16).read_bytes()
    entry = struct.pack("<HHIH", 262, 3, 1, 1)  # photometric BlackIsZero -> WhiteIsZero
    img = decode_image(data.replace(entry, struct.pack("<HHIH", 262, 3, 1, 0)))
    assert img.mode == "L" and np.array_equal(as_int(img.rgb[..., 0], 16), 65535 - q)
    with pytest.raises(ImageError, match=r"f\.tif: unsupported: float32 TIFF.*8- or 16-bit"):
        decode_image(pil_bytes(Image.fromarray(np.zeros((3, 3), np.float32)), "TIFF"), name="f.tif")


def test_extension_mismatch_is_read_by_content_with_a_warning(tmp_path):
    (tmp_path / "photo.png").write_bytes(pil_bytes(Image.new("RGB", (3, 2), (9, 9, 9)), "JPEG"))
    img = read_image(tmp_path / "photo.png")
    assert img.format == "jpeg" and any("extension" in w for w in img.warnings)


def test_multi_page_tiff_uses_first_page_with_warning():
    pages = [Image.new("RGB", (4, 4), (i * 50, 0, 0)) for i in range(3)]
    img = decode_image(pil_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert img.rgb[0, 0, 0] == 0 and any("3 pages" in w for w in img.warnings)


# --- Animated images ---


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_policy(fmt):
    frames = [Image.new("RGB", (8, 8), (i * 60, 10, 10)) for i in range(3)]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    data = pil_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], **extra)
    with pytest.raises(ImageError, match=r"3 frames.*only still images.*animated='first'"):
        decode_image(data, name="anim")
    img = decode_image(data, animated="first")
    assert as_int(img.rgb[0, 0, 0]) == 0 and any("first frame" in w for w in img.warnings)
    with pytest.raises(ValueError):
        decode_image(data, animated="all")


# --- Decompression bombs ---


def _huge_headers() -> dict[str, bytes]:
    n = 60000
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 8, 2, 0, 0, 0))
    png16 = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 16, 2, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + png_chunk(b"IEND", b"")
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, n, n, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    tiff = b"II*\x00" + struct.pack("<IH", 8, 2) + struct.pack("<HHII", 256, 4, 1, n)
    tiff += struct.pack("<HHII", 257, 4, 1, n) + struct.pack("<I", 0)
    jfif = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    bmp = struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHH", 40, n, -n, 1, 24) + b"\0" * 24
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (n - 1).to_bytes(3, "little") * 2
    return {
        "png": png + idat,
        "png16": png16 + idat,
        "jpeg": b"\xff\xd8" + jfif + sof + b"\xff\xd9",
        "gif": b"GIF89a" + struct.pack("<HHBBB", n, n, 0, 0, 0) + b";",
        "bmp": b"BM" + bmp,
        "tiff": tiff,
        "webp": b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x,
    }


@pytest.mark.parametrize("kind", sorted(_huge_headers()))
def test_bomb_header_refused_before_decoding(kind):
    data = _huge_headers()[kind]
    assert probe_size(data) == (60000, 60000)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match=r"60000x60000.*IMG2IMG_MAX_PIXELS"):
            decode_image(data, name="bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # 3.6 G pixels were never allocated


def test_limit_from_argument_and_environment(tmp_path, monkeypatch):
    path = write_image(tmp_path / "s.png", np.zeros((30, 40, 3)))
    with pytest.raises(ImageTooLargeError, match="30 = 1,200 pixels"):
        read_image(path, max_pixels=1199)
    assert read_image(path, max_pixels=1200).width == 40
    monkeypatch.setenv("IMG2IMG_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError):
        read_image(path)
    monkeypatch.setenv("IMG2IMG_MAX_PIXELS", "lots")
    with pytest.raises(ImageError, match="IMG2IMG_MAX_PIXELS"):
        read_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "GIF", "JPEG"])
def test_pillow_global_limit_neither_blocks_nor_warns_and_is_restored(monkeypatch, fmt):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow alone would refuse 20x20 (> 2 * 50)
    data = pil_bytes(Image.new("RGB", (20, 20), (1, 2, 3)), fmt)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert decode_image(data).width == 20
        except BaseException as e:  # noqa: BLE001 - collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and Image.MAX_IMAGE_PIXELS == 50


def test_opencv_limit_is_set_before_cv2_loads():
    code = "import os, img2img.io.images; print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    env = {**os.environ, "IMG2IMG_MAX_PIXELS": str(3 << 30)}
    env.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(3 << 30)
    env["OPENCV_IO_MAX_IMAGE_PIXELS"] = "12345"  # an explicit setting is respected
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "12345"


# --- Broken input ---


def _sample(fmt: str, **kw) -> bytes:
    return pil_bytes(Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)), fmt, **kw)


@pytest.mark.parametrize("kind", ["jpeg", "png", "png16", "tiff16", "webp", "gif", "bmp", "tiff"])
def test_truncated_files_fail_with_image_error(tmp_path, kind):
    if kind == "png16":
        data = cv2.imencode(".png", RNG.integers(0, 65536, (32, 32, 3), dtype=np.uint16))[1].tobytes()
    elif kind == "tiff16":
        data = write_image(tmp_path / "t.tif", RNG.random((32, 32, 3)), bit_depth=16).read_bytes()
    else:
        data = _sample(kind.upper())
    for cut in (len(data) // 2, len(data) * 9 // 10):
        (tmp_path / "cut.img").write_bytes(data[:cut])
        with pytest.raises(ImageError, match="cut.img"):
            read_image(tmp_path / "cut.img")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (bytes(RNG.integers(0, 256, 2000, dtype=np.uint8)), "not an image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "header is truncated"),
        (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)), "zero"),
        (b"notes about a picture\n", "not an image"),
    ],
)
def test_bad_files_raise_image_error_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match) as info:
        read_image(path)
    assert "bad.png" in str(info.value)
    with pytest.raises(ImageError, match=match):
        decode_image(content, name="upload")


def test_corrupt_pixel_data_fails():
    data = bytearray(_sample("PNG"))
    data[60:80] = b"\x00" * 20  # inside IDAT: CRC and zlib stream broken
    with pytest.raises(ImageError, match="PNG"):
        decode_image(bytes(data))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)
    with pytest.raises(ImageError, match="no such file"):
        probe_size(tmp_path / "nope.png")


# --- Paths, probing, writing rules ---


def test_is_image_path():
    good = ["a.png", "B.JPG", "c.Jpeg", "d.webp", "e.TIFF", "f.tif", "g.bmp", "h.gif", Path("x/y.PNG")]
    assert all(is_image_path(p) for p in good)
    assert not any(is_image_path(p) for p in ["a.txt", "b", "c.png.bak", "d.heic", ".png"])
    assert images.IMAGE_EXTENSIONS >= {".png", ".jpg", ".gif"}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_probe_size_matches_pillow(tmp_path, fmt):
    im = Image.fromarray(RNG.integers(0, 256, (13, 29, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010E] = "x" * 5000  # a large EXIF segment before the JPEG frame header
    data = pil_bytes(im, fmt, **({"exif": exif.tobytes()} if fmt == "JPEG" else {}))
    (tmp_path / "p.img").write_bytes(data)
    assert probe_size(data) == probe_size(tmp_path / "p.img") == (29, 13)
    if fmt == "WEBP":
        for kw in ({"lossless": True}, {"quality": 50}):
            assert probe_size(pil_bytes(im, fmt, **kw)) == (29, 13)
        assert probe_size(pil_bytes(im.convert("RGBA"), fmt, exif=exif.tobytes())) == (29, 13)


def test_write_rejects_bad_requests(tmp_path):
    rgb, alpha = RNG.random((4, 4, 3)), RNG.random((4, 4))
    for name in ("a.jpg", "a.jpeg", "a.bmp"):
        with pytest.raises(ImageError, match=r"transparency.*\.png or \.webp.*drop"):
            write_image(tmp_path / name, rgb, alpha)
    for name in ("a.xyz", "a.gif", "noext"):
        with pytest.raises(ImageError, match="cannot write"):
            write_image(tmp_path / name, rgb)
    bad = [
        (dict(rgb=RNG.random((4, 4, 2))), "shape"),
        (dict(rgb=np.zeros((0, 4, 3))), "non-empty"),
        (dict(rgb=(rgb * 255).astype(np.int32)), "floats"),
        (dict(rgb=(rgb * 255).astype(np.uint8), alpha=np.zeros((4, 4), np.uint16)), "one sample type"),
        (dict(rgb=np.full((4, 4, 3), np.nan)), "NaN"),
        (dict(rgb=rgb, alpha=RNG.random((3, 4))), "alpha shape"),
        (dict(rgb=rgb, bit_depth=12), "bit_depth"),
        (dict(rgb=rgb, quality=0), "quality"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ImageError, match=match):
            write_image(tmp_path / "ok.png", **kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_write_accepts_hw_hwx1_and_alpha_hwx1(tmp_path):
    grey = RNG.random((5, 6))
    a = read_image(write_image(tmp_path / "a.png", grey))
    b = read_image(write_image(tmp_path / "b.png", grey[..., None], grey[..., None]))
    assert a.mode == "L" and b.mode == "LA" and np.array_equal(a.rgb, b.rgb)


def test_atomic_write_creates_folders_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "deep" / "er" / "out.png"
    assert write_image(target, np.zeros((4, 4, 3))) == target
    write_image(target, np.ones((4, 4, 3)))  # overwrite in place
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]
    assert read_image(target).rgb.min() == 1


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = write_image(tmp_path / "keep.png", np.zeros((4, 4, 3)))
    before = target.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images.os, "replace", broken_replace)
    with pytest.raises(ImageError, match="keep.png.*No space left"):
        write_image(target, np.ones((4, 4, 3)))
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["keep.png"]
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="folder"):
        write_image(tmp_path / "dir.png", np.ones((4, 4, 3)))


def test_written_file_permissions_follow_umask(tmp_path):
    if os.name != "posix":
        pytest.skip(reason="POSIX permissions only")
    path = write_image(tmp_path / "perm.png", np.zeros((2, 2, 3)))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_loaded_image_properties():
    img = decode_image(pil_bytes(Image.new("RGBA", (7, 3), (10, 20, 30, 40)), "PNG"), name="x")
    assert (img.width, img.height, img.mode, img.format, img.path) == (7, 3, "RGBA", "png", None)
    assert img.rgb.shape == (3, 7, 3) and img.alpha.shape == (3, 7) and img.alpha.dtype == np.float32
    assert Path(images.__file__).name == "images.py"


# --- Real files (skipped without the shared data folder) ---

DATA = Path(os.environ.get("IMG2IMG_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.mark.slow
def test_real_16_bit_maps_photos_and_grey_jpegs(tmp_path):
    city = DATA / "cityscapes_samples"
    if not city.is_dir():
        pytest.skip(reason=f"real data not found at {DATA} (set IMG2IMG_DATA)")
    inst = sorted((city / "train_inst").glob("*.png"))[0]
    want = cv2.imread(str(inst), cv2.IMREAD_UNCHANGED)
    img = read_image(inst)
    assert want.dtype == np.uint16 and want.max() > 255  # instance ids need all 16 bits
    assert img.mode == "L" and img.bit_depth == 16 and np.array_equal(as_int(img.rgb[..., 0], 16), want)
    photo = sorted((city / "train_img").glob("*.png"))[0]
    img = read_image(photo)
    assert (img.width, img.height) == probe_size(photo) == (2048, 1024)
    assert np.array_equal(as_int(img.rgb), cv2.imread(str(photo))[..., ::-1])
    back = read_image(write_image(tmp_path / "p16.png", img.rgb, bit_depth=16))
    assert back.bit_depth == 16 and np.array_equal(as_int(back.rgb, 16), as_int(img.rgb, 16))
    greys = [p for p in sorted((DATA / "horse2zebra" / "trainB").glob("*.jpg")) if Image.open(p).mode == "L"]
    assert greys, "the horse2zebra set has greyscale JPEGs"
    img = read_image(greys[0])
    assert img.mode == "L" and np.array_equal(as_int(img.rgb[..., 0]), np.asarray(Image.open(greys[0])))


def test_quantised_samples_are_written_as_they_are(tmp_path) -> None:
    """uint8 / uint16 arrays (the engine's large outputs) are stored without a float round trip; a PNG taller
    than one compression band decodes to the same samples; 16-bit samples saved at 8 bits are rounded."""
    rgb8 = RNG.integers(0, 256, (1500, 1200, 3)).astype(np.uint8)  # several ~4 MB bands
    alpha8 = RNG.integers(0, 256, (1500, 1200)).astype(np.uint8)
    write_image(tmp_path / "a.png", rgb8, alpha8)
    back = read_image(tmp_path / "a.png")
    assert back.bit_depth == 8 and np.array_equal(np.rint(back.rgb * 255), rgb8)
    assert np.array_equal(np.rint(back.alpha * 255), alpha8)
    grey16 = RNG.integers(0, 65536, (40, 30)).astype(np.uint16)
    write_image(tmp_path / "g.png", grey16, bit_depth=16)
    g = read_image(tmp_path / "g.png")
    assert g.bit_depth == 16 and np.array_equal(np.rint(g.rgb[..., 0] * 65535), grey16)
    write_image(tmp_path / "g8.png", grey16)  # 8 bits asked: rounded like the float path
    g8 = read_image(tmp_path / "g8.png")
    assert np.array_equal(np.rint(g8.rgb[..., 0] * 255), np.rint(grey16 / 65535 * 255))
