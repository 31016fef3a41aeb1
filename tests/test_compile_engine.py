"""The compile engine (`engine="compile"`, `--compile`): torch.compile of the network gives the torch
engine's result with its code cached under $IMG2IMG_HOME/compile; no compiler or an unwritable cache is a
clear error before any work; a compiler that fails mid-run leaves the network running eagerly, with a note."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.archs import SRVGGNetCompact
from img2img.cli import main
from img2img.compiling import CACHE_ENV
from img2img.errors import Img2ImgError
from img2img.infer.model import load
from img2img.io.images import read_image
from img2img.weights.format import Card, save_weights

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # inductor: "No CUDA runtime is found"

REPO = Path(__file__).resolve().parent.parent
ASTRONAUT = REPO / "examples" / "astronaut.png"


def tiny(path: Path, nf: int) -> Path:
    torch.manual_seed(0)
    kwargs = {"nf": nf, "num_conv": 2, "scale": 4}
    card = Card(name=f"tiny-{nf}", arch="SRVGGNetCompact", arch_kwargs=kwargs, task="upscale", scale=4)
    return save_weights(path / f"tiny-{nf}.safetensors", SRVGGNetCompact(**kwargs), card)


@pytest.fixture
def cache(home, monkeypatch) -> Path:
    """No inductor cache folder chosen by the user: ours under $IMG2IMG_HOME (restored afterwards)."""
    monkeypatch.setenv(CACHE_ENV, "")
    return home / "compile"


def test_compiled_network_gives_the_torch_result_and_its_code_is_cached(tmp_path, cache, one_thread, capsys):
    weights = tiny(tmp_path, 8)
    rgb = read_image(ASTRONAUT).rgb
    ours, ref = load(weights, device="cpu", engine="compile", tile=0), load(weights, device="cpu", tile=0)
    assert ours.describe()["engine"] == "compile" and ours.precision == "fp32"
    for img in (rgb[:40, :56], rgb[:30, :44]):  # a second size: compiled again, for any size
        got, want = ours(img), ref(img)
        assert got.shape == want.shape == (img.shape[0] * 4, img.shape[1] * 4, 3)
        assert np.abs(got - want).max() <= 1e-5
    assert not ours.notes  # nothing fell back to eager
    assert any(p.is_file() for p in cache.rglob("*"))  # the generated code, for the next process
    # The command: `--compile` is `--engine compile`, named in the status line; the output as with torch.
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((rgb[:40, :56] * 255).round().astype(np.uint8)).save(src / "a.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    argv = ["upscale", str(src), "--weights", str(weights), "--tile", "0"]
    assert main([*argv[:2], str(tmp_path / "c"), *argv[2:], "--compile"]) == 1  # the broken file fails alone
    err = capsys.readouterr().err
    assert "tiny-8 on cpu, fp32 (auto), compile" in err and "broken.png" in err
    assert main([*argv[:2], str(tmp_path / "t"), *argv[2:]]) == 1
    assert np.array_equal(read_image(tmp_path / "c" / "a.png").rgb, read_image(tmp_path / "t" / "a.png").rgb)


def test_compile_engine_refuses_before_any_work(tmp_path, cache, monkeypatch, tiny_labels_model) -> None:
    from torch._inductor import config

    weights = tiny(tmp_path, 4)
    with pytest.raises(Img2ImgError, match="apply to image models only"):
        load(tiny_labels_model[0], device="cpu", engine="compile")
    with monkeypatch.context() as m:
        m.setattr(config.cpp, "cxx", (None, str(tmp_path / "no-such-g++")))
        with pytest.raises(Img2ImgError, match="needs a C\\+\\+ compiler"):
            load(weights, device="cpu", engine="compile")
    assert not cache.exists()  # nothing made for a refused load
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the cache folder should be")
    with pytest.raises(Img2ImgError, match="cannot write the compiled code .*IMG2IMG_HOME"):
        load(weights, device="cpu", engine="compile")


def test_a_compiler_that_fails_mid_run_leaves_the_network_running_eagerly(tmp_path, cache, monkeypatch) -> None:
    from torch._inductor import config

    weights = tiny(tmp_path, 6)  # a network no earlier test compiled, so nothing comes from a cache
    model = load(weights, device="cpu", engine="compile", tile=0)
    monkeypatch.setattr(config.cpp, "cxx", (None, str(tmp_path / "no-such-g++")))  # the compiler goes away
    img = read_image(ASTRONAUT).rgb[:24, :24]
    got = model(img)
    assert any("torch.compile failed" in n and "running the network eagerly" in n for n in model.notes)
    assert np.array_equal(got, load(weights, device="cpu", tile=0)(img))
    assert np.array_equal(model(img), got)  # and stays eager, without a second note
    assert sum("torch.compile failed" in n for n in model.notes) == 1
