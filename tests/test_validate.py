"""Weights cards are untrusted: a hostile or careless card becomes a WeightsError (exit 2) before any network
is allocated, fast and in little memory, for every task kind and for bundles; a broken file in the weights
cache is listed as broken and the rest keeps working; the app checks a model before its worker builds it."""

from __future__ import annotations

import inspect
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import img2img
from img2img.archs import ARCHS, build_arch
from img2img.archs.params import PARAMS, kwargs_problems
from img2img.cli import main
from img2img.errors import WeightsError
from img2img.weights.format import CARD_KEY, Card, bundle_state_dict, save_weights
from img2img.weights.validate import BUDGET_ENV, check_weights_file

BUNDLED = Path(__file__).resolve().parents[1] / "weights"
SMALL = BUNDLED / "esrgan-small-x4.safetensors"


def planted(tmp_path: Path, change, src: Path = SMALL, name: str = "w") -> Path:
    """A copy of `src` whose card `change(card_dict)` edited (a str result replaces the card text)."""
    sd = load_file(str(src))
    card = json.loads(src.with_suffix(".json").read_text())
    text = change(card)
    path = tmp_path / f"{name}.safetensors"
    save_file(sd, str(path), metadata={CARD_KEY: text if isinstance(text, str) else json.dumps(card)})
    return path


HOSTILE = {
    "nb_100000": (lambda c: c["arch_kwargs"].update(nb=100000), "nb must be in"),
    "nf_1e7": (lambda c: c["arch_kwargs"].update(nf=1e7), "nf must be a whole number"),
    "scale_3_card": (lambda c: c.update(scale=3), "scale is 3 but RRDBNet has scale=4"),
    "scale_3_arch": (
        lambda c: (c.update(scale=3), c["arch_kwargs"].update(scale=3)),
        "scale must be one of 1, 2, 4, 8",
    ),
    "size_multiple_0": (lambda c: c.update(size_multiple=0), "size_multiple must be"),
    "value_range_0_0": (lambda c: c.update(value_range=[0, 0]), "value_range must be"),
    "value_range_nan": (lambda c: c.update(value_range=[0, float("nan")]), "value_range must be"),
    "invalid_json": (lambda c: "{not json", "not valid JSON"),
    "not_an_object": (lambda c: "[1, 2]", "must be a JSON object"),
    "unknown_kwarg": (lambda c: c["arch_kwargs"].update(depth=3), "has no argument 'depth'"),
    "unknown_arch": (lambda c: c.update(arch="Nope"), "unknown architecture"),
    "kwargs_not_object": (lambda c: c.update(arch_kwargs=[1]), "arch_kwargs must be a JSON object"),
    "networks_list": (lambda c: c.update(networks=[1]), "networks must be a JSON object"),
    "fewer_blocks": (lambda c: c["arch_kwargs"].update(nb=3), "weights do not fit RRDBNet"),
    "wider": (lambda c: c["arch_kwargs"].update(nf=48), "shape mismatch"),
    "bad_task": (lambda c: c.update(task="paint"), "task must be one of"),
    "output_fixed_huge": (lambda c: c.update(output={"size": "fixed", "height": 10**9}), "output.height"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_card_is_refused_before_anything_is_built(case: str, tmp_path: Path) -> None:
    change, words = HOSTILE[case]
    path = planted(tmp_path, change)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(WeightsError, match=words.replace("(", r"\(")):
        img2img.load(path, device="cpu")
    assert time.monotonic() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200 * 1024  # KB: nothing big was built


@pytest.mark.parametrize("case", ["nb_100000", "size_multiple_0", "invalid_json", "value_range_0_0"])
def test_the_cli_exits_2_with_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = planted(tmp_path, HOSTILE[case][0])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), str(tmp_path / "out"), "--weights", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err
    assert not (tmp_path / "out" / "in.png").exists()


def test_a_card_beside_the_file_is_checked_too(tmp_path: Path) -> None:
    sd = load_file(str(SMALL))
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    card = json.loads(SMALL.with_suffix(".json").read_text())
    card["size_multiple"] = 0
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="size_multiple"):
        check_weights_file(path)
    path.with_suffix(".json").write_text("{")
    with pytest.raises(WeightsError, match="not valid JSON"):
        check_weights_file(path)


def test_the_memory_budget_is_checked_before_allocating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BUDGET_ENV, "0.0001")  # ~100 KB; the small ESRGAN needs ~2 MB
    with pytest.raises(WeightsError, match=f"over the .* budget; raise {BUDGET_ENV}"):
        img2img.load(SMALL, device="cpu")
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(WeightsError, match="not a number"):
        img2img.load(SMALL, device="cpu")
    monkeypatch.delenv(BUDGET_ENV)
    assert img2img.load(SMALL, device="cpu").card.arch == "RRDBNet"


def test_every_bundled_card_passes() -> None:
    for path in sorted(BUNDLED.glob("*.safetensors")):
        card, header = check_weights_file(path)
        assert card.name and header.shapes


def test_every_arch_declares_its_parameters() -> None:
    """Adding an arch means declaring the range of each of its keyword arguments (archs/params.py)."""
    assert set(PARAMS) == set(ARCHS)
    for name, cls in ARCHS.items():
        args = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        assert set(args) == set(PARAMS[name]), name


def test_ranges_refuse_out_of_range_values() -> None:
    assert kwargs_problems("RRDBNet", {"nb": 23, "nf": 64, "scale": 4}) == []
    assert kwargs_problems("RRDBNet", {"nb": -1})[0].startswith("nb must be in")
    assert kwargs_problems("RRDBNet", {"nb": True})[0].startswith("nb must be a whole number")
    assert kwargs_problems("StageIGenerator", {"image_size": 48})[0].startswith("image_size must be a power of two")
    assert kwargs_problems("StageIIGenerator", {"stage1": {"gf": 0}}) == ["stage1 gf must be in 1..4096, not 0"]
    assert "must be one of" in kwargs_problems("UNetGenerator", {"norm": "group"})[0]


# --- Bundles and the other task kinds ---


def _labels_bundle(tmp_path: Path, **change) -> Path:
    g = build_arch("SPADEGenerator", label_nc=3, ngf=4, use_vae=True, z_dim=8, crop_size=32, hidden=8)
    e = build_arch("ConvEncoder", ndf=4, z_dim=8, crop_size=32)
    card = Card(
        name="lab", arch="SPADEGenerator", task="synthesize",
        arch_kwargs={"label_nc": 3, "ngf": 4, "use_vae": True, "z_dim": 8, "crop_size": 32, "hidden": 8},
        value_range=(-1.0, 1.0), inputs={"label_nc": 3, "z_dim": 8, "style": True},
        networks={"E": {"arch": "ConvEncoder", "arch_kwargs": {"ndf": 4, "z_dim": 8, "crop_size": 32}}},
    )  # fmt: skip
    path = save_weights(tmp_path / "lab.safetensors", bundle_state_dict(g, E=e), card)
    if change:
        return planted(tmp_path, lambda c: [f(c) for f in change.values()], src=path, name="lab2")
    return path


def test_a_labels_bundle_loads_and_its_networks_are_checked(tmp_path: Path) -> None:
    model = img2img.load(_labels_bundle(tmp_path), device="cpu")
    assert model(np.zeros((16, 16), np.int64), seed=1).shape == (16, 16, 3)
    bad = _labels_bundle(tmp_path, e=lambda c: c["networks"]["E"]["arch_kwargs"].update(ndf=10**6))
    with pytest.raises(WeightsError, match="networks.E ConvEncoder: ndf must be in"):
        img2img.load(bad, device="cpu")
    wrong = _labels_bundle(tmp_path, e=lambda c: c["networks"]["E"]["arch_kwargs"].update(ndf=8))
    with pytest.raises(WeightsError, match="network E: weights do not fit ConvEncoder"):
        img2img.load(wrong, device="cpu")
    labels = _labels_bundle(tmp_path, e=lambda c: c["inputs"].update(label_nc=0))
    with pytest.raises(WeightsError, match="inputs: label_nc"):
        img2img.load(labels, device="cpu")
    channels = _labels_bundle(tmp_path, e=lambda c: c["inputs"].update(instance=True))
    with pytest.raises(WeightsError, match="inputs give 4 input channels .* takes label_nc=3"):
        img2img.load(channels, device="cpu")
    z = _labels_bundle(tmp_path, e=lambda c: c["inputs"].update(z_dim=9))
    with pytest.raises(WeightsError, match="inputs.z_dim is 9 but SPADEGenerator has z_dim=8"):
        img2img.load(z, device="cpu")


def _text_bundle(tmp_path: Path) -> Path:
    kw = {"t_dim": 8, "c_dim": 4, "z_dim": 4, "gf": 2, "image_size": 16}
    g = build_arch("StageIGenerator", **kw)
    card = Card(
        name="txt", arch="StageIGenerator", arch_kwargs=kw, task="generate", value_range=(-1.0, 1.0),
        inputs={"embedding_dim": 8, "noise_dim": 4, "stages": [{"stage": 1, "module": "", "output": 0}]},
    )  # fmt: skip
    return save_weights(tmp_path / "txt.safetensors", g, card)


TEXT_CASES = {
    "stages_missing": (lambda c: c["inputs"].pop("stages"), "inputs.stages must list"),
    "stage_module_missing": (lambda c: c["inputs"]["stages"][0].update(module="nope"), "names module 'nope'"),
    "noise_dim_0": (lambda c: c["inputs"].update(noise_dim=0), "inputs.noise_dim"),
    "image_size_odd": (lambda c: c["arch_kwargs"].update(image_size=24), "image_size must be a power of two"),
    "embedding_dim": (lambda c: c["inputs"].update(embedding_dim=9), "inputs.embedding_dim is 9 but .* t_dim=8"),
    "noise_dim": (lambda c: c["inputs"].update(noise_dim=5), "inputs.noise_dim is 5 but .* z_dim=4"),
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_a_text_card_is_checked(case: str, tmp_path: Path) -> None:
    src = _text_bundle(tmp_path)
    assert img2img.load(src, device="cpu")(embeddings=np.zeros((1, 8), np.float32))[0].images[0].shape == (16, 16, 3)
    change, words = TEXT_CASES[case]
    with pytest.raises(WeightsError, match=words):
        img2img.load(planted(tmp_path, change, src=src, name="bad"), device="cpu")


# --- The weights cache ---


def test_a_broken_cache_entry_is_listed_as_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path))
    cache = tmp_path / "weights"
    cache.mkdir()
    (cache / "bad-json.safetensors").write_bytes(planted(tmp_path, lambda c: "{oops").read_bytes())
    (cache / "huge.safetensors").write_bytes(planted(tmp_path, HOSTILE["nb_100000"][0]).read_bytes())
    (cache / "junk.safetensors").write_bytes(b"\x00" * 40)
    shutil.copy(SMALL, cache / "good.safetensors")
    rows = {w.name: w for w in img2img.list_weights()}
    assert "not valid JSON" in rows["bad-json"].broken and "nb must be in" in rows["huge"].broken
    assert "not a valid .safetensors" in rows["junk"].broken
    assert rows["good"].broken == "" and rows["good"].task == "upscale"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "broken (3, not loadable)" in out and "nb must be in 0..128" in out
    assert main(["models", "--json"]) == 0
    data = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert data["huge"]["broken"] and not data["good"]["broken"]


def test_the_app_starts_with_a_broken_entry_and_checks_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gradio")
    import gradio as gr

    from img2img.app import AppSettings
    from img2img.app.handlers import Runner

    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path))
    cache = tmp_path / "weights"
    cache.mkdir()
    (cache / "bad-json.safetensors").write_bytes(planted(tmp_path, lambda c: "{oops").read_bytes())
    good = cache / "later-bad.safetensors"
    shutil.copy(SMALL, good)
    runner = Runner(AppSettings(), tmp_path / "out")
    assert "bad-json" not in [i.name for i in runner.models_for("upscale")]
    assert "later-bad" in [i.name for i in runner.models_for("upscale")]
    # The file changes after the app started: the request is refused before the worker runs.
    good.write_bytes(planted(tmp_path, HOSTILE["nb_100000"][0]).read_bytes())
    built = []
    monkeypatch.setattr(runner, "run", lambda *a, **k: built.append(1))
    with pytest.raises(gr.Error, match="nb must be in"):
        runner.check_choice("upscale", "later-bad", "auto", "auto")
    assert not built


def test_meta_build_allocates_nothing() -> None:
    from img2img.weights.validate import meta_state

    net, shapes = meta_state("RRDBNet", {"nb": 128, "nf": 4096, "gc": 4096})
    assert all(p.device.type == "meta" for p in net.parameters())
    assert sum(torch.Size(s).numel() for s in shapes.values()) > 10**11
