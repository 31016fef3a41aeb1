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
from img2img.io.labels import semantic_input
from img2img.weights.format import Card, bundle_state_dict, load_bundle, read_card, save_weights


def test_labels_model_builds_the_one_hot_input_and_crops_back(tiny_labels_model, tiny_labels) -> None:
    path, g = tiny_labels_model
    model = img2img.load(path, device="cpu")
    assert isinstance(model, LabelsModel) and model.describe()["semantic_nc"] == 4
    ids = np.zeros((10, 13), np.int64)
    ids[:, 6:] = 2
    ids[0, 0] = 255  # don't care has its own channel
    out = model(ids)
    assert out.shape == (10, 13, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    x = torch.from_numpy(semantic_input(ids, tiny_labels.spec))[None]
    x = torch.nn.functional.pad(x, (0, 3, 0, 2), mode="replicate")  # to 12 x 16, the multiple of 4
    with torch.no_grad():
        want = ((g(x)[..., :10, :13] + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, want, atol=1e-5)  # ids were not mapped through [-1, 1]


def test_labels_model_refuses_bad_ids_and_arrays(tiny_labels_model) -> None:
    path, _ = tiny_labels_model
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


def test_bundles_hold_several_networks_in_one_file(tmp_path: Path, tiny_labels) -> None:
    G_KW, labels_card = tiny_labels.g_kw, tiny_labels.card
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


def test_old_cards_read_as_image_models(tiny_labels) -> None:
    SPEC = tiny_labels.spec
    old = {"name": "x", "arch": "RRDBNet", "arch_kwargs": {}, "task": "upscale", "scale": 4}
    card = Card.from_dict(old)
    assert card.kind == "image" and card.output_size == "scale" and card.networks == {} and card.inputs == {}
    assert Card.from_dict({**old, "task": "synthesize", "inputs": SPEC.to_dict()}).output_size == "same"


def test_text_model_generates_per_stage_reproducibly_and_names_unknown_words(tiny_text_model) -> None:
    from img2img.infer.tasks import TextModel

    model = img2img.load(tiny_text_model, device="cpu")
    assert isinstance(model, TextModel) and model.last_stage == 2
    (r,) = model("a red circle on a purple background", n=2, seed=5)
    assert r.unknown_words == ["purple"] and r.seeds == [5, 6]
    assert [im.shape for im in r.images] == [(32, 32, 3), (32, 32, 3)] and not np.allclose(r.images[0], r.images[1])
    again = model(["a green square", "a red circle on a purple background"], n=2, seed=5)
    np.testing.assert_allclose(again[1].images[1], r.images[1], atol=1e-6)  # sample k of seed S: the same
    (one,) = model("a red circle on a purple background", n=1, seed=6)  # sample 1 of seed 5 is sample 0 of seed 6
    np.testing.assert_array_equal(one.images[0], r.images[1])
    assert not np.allclose(model("a red circle on a purple background", seed=9)[0].images[0], r.images[0])
    (s1,) = model("a red circle", stage=1)
    assert s1.images[0].shape == (16, 16, 3)
    emb = model.encode(["a red circle"])[0].numpy()
    np.testing.assert_allclose(model(embeddings=emb, seed=3)[0].images[0], model("a red circle", seed=3)[0].images[0])
    for bad, match in ((dict(stage=3), "stage"), (dict(n=0), "1..64"), (dict(embeddings=np.ones((1, 5))), "N x 16")):
        with pytest.raises(Img2ImgError, match=match):
            model(None if "embeddings" in bad else "a red circle", **bad)


def test_instance_norm_label_models_take_label_maps_smaller_than_two_grid_cells(tmp_path) -> None:
    from img2img.io.labels import LabelSpec

    spec = LabelSpec(label_nc=3)
    kw = {"label_nc": 3, "ngf": 2, "hidden": 4, "param_free": "instance", "spectral": False}
    torch.manual_seed(0)
    net = build_arch("SPADEGenerator", **kw).eval()
    card = Card(name="tiny-spade-in", arch="SPADEGenerator", arch_kwargs=kw, task="synthesize",
                value_range=(-1.0, 1.0), size_multiple=32, inputs=spec.to_dict())  # fmt: skip
    model = img2img.load(save_weights(tmp_path / "s.safetensors", net, card), device="cpu")
    for side in (8, 32, 40):  # 32 px is a 1 x 1 grid at the coarsest level: padded to 2 x 2 cells inside
        ids = np.zeros((side, side), np.int64)
        ids[side // 2 :] = 2
        out = model(ids)
        assert out.shape == (side, side, 3) and np.isfinite(out).all()


def test_another_text_encoder_can_take_the_bundled_ones_place(tiny_text_model) -> None:
    """Any object with `embedding_dim` and `encode(prompts)` conditions the generator; its embeddings are checked
    like precomputed ones, and its failures are reported as the encoder's."""
    model = img2img.load(tiny_text_model, device="cpu")
    bundled = model.text_encoder

    class Synonyms:  # a user's encoder: maps its own words onto the bundled encoder's
        embedding_dim = 16

        def encode(self, prompts):
            emb, _ = bundled.encode([p.replace("crimson", "red") for p in prompts])
            return emb.numpy(), [["crimson"] if "crimson" in p else [] for p in prompts]

    want = model("a red circle on a blue background", seed=4)[0].images[0]
    model.set_text_encoder(Synonyms())
    (r,) = model("a crimson circle on a blue background", seed=4)
    np.testing.assert_allclose(r.images[0], want, atol=1e-6)
    assert r.unknown_words == ["crimson"]  # what the encoder says it could not use is passed on

    class Broken:
        embedding_dim = 16

        def __init__(self, out):
            self.out = out

        def encode(self, prompts):
            if isinstance(self.out, Exception):
                raise self.out
            return self.out, [[] for _ in prompts]

    for out, match in (
        (np.full((1, 16), np.nan), "finite"),
        (np.ones((1, 5)), "N x 16"),
        (np.ones((2, 16)), "2 embeddings for 1 prompts"),
        (RuntimeError("model file missing"), "text encoder failed.*model file missing"),
    ):
        model.set_text_encoder(Broken(out))
        with pytest.raises(Img2ImgError, match=match):
            model("a red circle")
    with pytest.raises(Img2ImgError, match="takes 16-d embeddings; this encoder gives 8-d"):
        model.set_text_encoder(type("Small", (), {"embedding_dim": 8, "encode": lambda self, p: None})())
    with pytest.raises(Img2ImgError, match="embedding_dim and an encode"):
        model.set_text_encoder(object())
