"""The task kinds behind the one `img2img.load`: a label-map model (one-hot built inside, no value-range
mapping of ids, nearest-only resizing, padding to the size multiple, bad ids named) and bundles of several
networks in one file. Tiny real networks on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import img2img
from img2img.archs import build_arch
from img2img.errors import Img2ImgError, LabelError, WeightsError
from img2img.infer.tasks import LabelsModel
from img2img.io.labels import LabelSpec, semantic_input
from img2img.weights.format import Card, bundle_state_dict, load_bundle, read_card, save_weights

SPEC = LabelSpec(label_nc=3, dontcare=255, palette=[(0, 0, 0), (255, 0, 0), (0, 0, 255)], classes=["a", "b", "c"])
G_KW = {"in_ch": SPEC.semantic_nc, "out_ch": 3, "ngf": 4, "n_blocks": 1, "norm": "none"}


def labels_card(**kw) -> Card:
    return Card(
        name="tiny-labels", arch="ResnetGenerator", arch_kwargs=G_KW, task="synthesize", value_range=(-1.0, 1.0),
        size_multiple=4, inputs=SPEC.to_dict(), **kw,
    )  # fmt: skip


def save_labels_model(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    g = build_arch("ResnetGenerator", **G_KW).eval()
    return save_weights(tmp_path / "tiny-labels.safetensors", g, labels_card()), g


def test_labels_model_builds_the_one_hot_input_and_crops_back(tmp_path: Path) -> None:
    path, g = save_labels_model(tmp_path)
    model = img2img.load(path, device="cpu")
    assert isinstance(model, LabelsModel) and model.describe()["semantic_nc"] == 4
    ids = np.zeros((10, 13), np.int64)
    ids[:, 6:] = 2
    ids[0, 0] = 255  # don't care has its own channel
    out = model(ids)
    assert out.shape == (10, 13, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    x = torch.from_numpy(semantic_input(ids, SPEC))[None]
    x = torch.nn.functional.pad(x, (0, 3, 0, 2), mode="replicate")  # to 12 x 16, the multiple of 4
    with torch.no_grad():
        want = ((g(x)[..., :10, :13] + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, want, atol=1e-5)  # ids were not mapped through [-1, 1]


def test_labels_model_refuses_bad_ids_and_arrays(tmp_path: Path) -> None:
    path, _ = save_labels_model(tmp_path)
    model = img2img.load(path, device="cpu")
    with pytest.raises(LabelError, match=r"label id 3 is outside the model's classes 0\.\.2 or 255"):
        model(np.full((4, 4), 3))
    with pytest.raises(LabelError, match="integer ids"):
        model(np.zeros((4, 4), np.float32))
    with pytest.raises(LabelError, match="2-D"):
        model(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(LabelError, match="takes no instance map"):
        model(np.zeros((4, 4), np.int64), instances=np.zeros((4, 4), np.int64))
    with pytest.raises(Img2ImgError, match="no style input"):
        model(np.zeros((4, 4), np.int64), style=np.zeros((4, 4, 3), np.float32))
    with pytest.raises(Img2ImgError, match="tile apply to image models only"):
        img2img.load(path, device="cpu", tile=64)


def test_bundles_hold_several_networks_in_one_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    g = build_arch("ResnetGenerator", **G_KW)
    e = build_arch("PatchDiscriminator", in_ch=3, ndf=4, n_layers=1)
    card = labels_card(
        networks={"E": {"arch": "PatchDiscriminator", "arch_kwargs": {"in_ch": 3, "ndf": 4, "n_layers": 1}}}
    )
    path = save_weights(tmp_path / "b.safetensors", bundle_state_dict(g, E=e), card)
    nets, back = load_bundle(path)
    assert set(nets) == {"", "E"} and read_card(path).networks == back.networks
    for a, b in zip(e.state_dict().values(), nets["E"].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="networks \\['F'\\]"):
        save_weights(tmp_path / "c.safetensors", g, labels_card(networks={"F": {"arch": "RRDBNet"}}))
    assert img2img.load(path, device="cpu")(np.zeros((8, 8), np.int64)).shape == (8, 8, 3)


def test_old_cards_read_as_image_models() -> None:
    old = {"name": "x", "arch": "RRDBNet", "arch_kwargs": {}, "task": "upscale", "scale": 4}
    card = Card.from_dict(old)
    assert card.kind == "image" and card.output_size == "scale" and card.networks == {} and card.inputs == {}
    assert Card.from_dict({**old, "task": "synthesize", "inputs": SPEC.to_dict()}).output_size == "same"


def save_text_model(tmp_path: Path) -> Path:
    """A tiny two-stage text -> image bundle: tokenizer in the card, sentence encoder T, Stage-II G
    holding its Stage I (16 px -> 32 px)."""
    from img2img.text import Tokenizer

    tok = Tokenizer.build(["a red circle on a blue background", "a green square on a black background"])
    t_kw = {"vocab_size": len(tok), "embed_dim": 8, "hidden": 8, "out_dim": 16}
    s1 = {"t_dim": 16, "c_dim": 4, "z_dim": 6, "gf": 4, "image_size": 16}
    g_kw = {"stage1": s1, "gf": 4, "r_num": 1, "up_factor": 2}
    torch.manual_seed(2)
    t, g = build_arch("SentenceEncoder", **t_kw), build_arch("StageIIGenerator", **g_kw)
    stages = [{"stage": 1, "module": "STAGE1_G", "output": 0, "size": 16}, {"stage": 2, "module": "", "output": 1}]
    card = Card(
        name="tiny-text", arch="StageIIGenerator", arch_kwargs=g_kw, task="generate", value_range=(-1.0, 1.0),
        inputs={"kind": "text", "tokenizer": tok.to_dict(), "embedding_dim": 16, "noise_dim": 6, "stages": stages},
        output={"size": "fixed", "height": 32, "width": 32},
        networks={"T": {"arch": "SentenceEncoder", "arch_kwargs": t_kw}},
    )  # fmt: skip
    return save_weights(tmp_path / "tiny-text.safetensors", bundle_state_dict(g, T=t), card)


def test_text_model_generates_per_stage_reproducibly_and_names_unknown_words(tmp_path: Path) -> None:
    from img2img.infer.tasks import TextModel

    model = img2img.load(save_text_model(tmp_path), device="cpu")
    assert isinstance(model, TextModel) and model.last_stage == 2
    (r,) = model("a red circle on a purple background", n=2, seed=5)
    assert r.unknown_words == ["purple"] and r.seeds == [5, 6]
    assert [im.shape for im in r.images] == [(32, 32, 3), (32, 32, 3)] and not np.allclose(r.images[0], r.images[1])
    again = model(["a green square", "a red circle on a purple background"], n=2, seed=5)
    np.testing.assert_allclose(again[1].images[1], r.images[1], atol=1e-6)  # sample k of seed S: the same
    assert not np.allclose(model("a red circle on a purple background", seed=9)[0].images[0], r.images[0])
    (s1,) = model("a red circle", stage=1)
    assert s1.images[0].shape == (16, 16, 3)
    emb = model.encode(["a red circle"])[0].numpy()
    np.testing.assert_allclose(model(embeddings=emb, seed=3)[0].images[0], model("a red circle", seed=3)[0].images[0])
    for bad, match in ((dict(stage=3), "stage"), (dict(n=0), "1..64"), (dict(embeddings=np.ones((1, 5))), "N x 16")):
        with pytest.raises(Img2ImgError, match=match):
            model(None if "embeddings" in bad else "a red circle", **bad)
