"""The Paint (label map -> photo) and Text (prompt -> images) tabs through the app's HTTP API, with tiny
real models in a temporary catalog: painted colours snap to the painted classes, a painting's classes
change the photo, seeds give other images, unknown words are named, and bad requests are refused."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402

from img2img import infer  # noqa: E402
from img2img.io.images import read_image  # noqa: E402
from img2img.io.labels import colourise  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_labels):
    from img2img.app import AppSettings, launch

    root = tmp_path_factory.mktemp("app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMG2IMG_HOME", str(root / "home"))
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        weights = root / "home" / "weights"
        weights.mkdir(parents=True)
        labels, _ = tiny_labels.save_labels(weights)
        text = tiny_labels.save_text(weights)
        demo = launch(AppSettings(port=free_port(), timeout=60, queue_size=4), prevent_thread_lock=True, quiet=True)
        try:
            client = Client(demo.local_url, verbose=False, download_files=str(root / "downloads"))
            yield SimpleNamespace(client=client, labels=labels, text=text, spec=tiny_labels.spec, root=root)
        finally:
            demo.close()


def painting(tmp_path: Path, spec, ids: np.ndarray, blur: bool = False) -> Path:
    rgb = colourise(ids, spec.palette)
    if blur:  # anti-aliased stroke edges: blends of neighbouring class colours
        rgb = ((rgb.astype(np.float32) + np.roll(rgb, 1, axis=1)) / 2).astype(np.uint8)
    path = tmp_path / "paint.png"
    Image.fromarray(rgb).save(path)
    return path


def synthesize(app, path: Path, seed: int = 0):
    editor = {"background": None, "layers": [], "composite": handle_file(str(path))}
    return app.client.predict(editor, "tiny-labels", None, seed, api_name="/synthesize")


def test_paint_gives_the_models_photo_of_the_painted_classes(app, tmp_path) -> None:
    ids = np.zeros((32, 32), np.int64)
    ids[:, 16:] = 2
    (label, photo), download, status, card = synthesize(app, painting(tmp_path, app.spec, ids, blur=True))
    from img2img.io.labels import map_colours

    snapped = map_colours(np.asarray(Image.open(label)), app.spec.palette)
    assert set(np.unique(snapped)) == {0, 2}  # blended stroke edges became a painted class, never class 1
    sharp = np.ones_like(ids, bool)
    sharp[:, [0, 16]] = False  # the two blended columns
    assert np.array_equal(snapped[sharp], ids[sharp])
    want = infer.load(app.labels, device="cpu")(snapped)
    got = read_image(download).rgb
    assert got.shape == (32, 32, 3) and np.abs(got - want).max() <= 1 / 255 + 1e-6
    assert "a, c" in status and "tiny-labels" in card
    assert Path(download).name == "painting_tiny-labels.png"
    ids2 = ids.copy()
    ids2[8:24, 4:12] = 1  # another class painted: another photo
    (_, _), other, _, _ = synthesize(app, painting(tmp_path, app.spec, ids2))
    assert not np.allclose(read_image(other).rgb, got)


def test_paint_refuses_unknown_models_and_bad_seeds(app, tmp_path) -> None:
    ids = np.zeros((8, 8), np.int64)
    path = painting(tmp_path, app.spec, ids)
    editor = {"background": None, "layers": [], "composite": handle_file(str(path))}
    with pytest.raises(Exception, match="Unknown synthesize model"):
        app.client.predict(editor, "tiny-text", None, 0, api_name="/synthesize")
    with pytest.raises(Exception, match="seed"):
        app.client.predict(editor, "tiny-labels", None, -5, api_name="/synthesize")


def test_text_fills_the_gallery_and_another_seed_gives_other_images(app) -> None:
    gallery, status, card = app.client.predict("a red circle on a purple background", "tiny-text", 2, 3, "last",
                                               api_name="/generate")  # fmt: skip
    assert len(gallery) == 2 and "purple" in status and "tiny-text" in card
    first = read_image(gallery[0]["image"]).rgb
    assert first.shape == (32, 32, 3)
    again, _, _ = app.client.predict("a red circle on a purple background", "tiny-text", 1, 3, "last",
                                     api_name="/generate")  # fmt: skip
    assert np.array_equal(read_image(again[0]["image"]).rgb, first)  # the same seed, the same image
    other, _, _ = app.client.predict("a red circle on a purple background", "tiny-text", 1, 9, "1",
                                     api_name="/generate")  # fmt: skip
    assert read_image(other[0]["image"]).rgb.shape == (16, 16, 3)
    with pytest.raises(Exception, match="between 1 and 8"):
        app.client.predict("a red circle", "tiny-text", 50, 0, "last", api_name="/generate")
    with pytest.raises(Exception, match="Write a prompt"):
        app.client.predict("  ", "tiny-text", 1, 0, "last", api_name="/generate")
