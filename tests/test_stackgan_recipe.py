"""StackGAN training: the text encoder recipe, both stages on the engine (steps, resume, export), the
matching-aware discriminator loss on really mismatched captions, CA/KL, and the exported bundle through
img2img.load and `img2img generate`."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from stackgan_helpers import TINY_G1, make_data, stage1, stage2, text_encoder

import img2img
from img2img.archs.stackgan import kl_loss
from img2img.cli import main
from img2img.data.shapes import COLOUR_NAMES, SHAPES
from img2img.errors import ConfigError
from img2img.text import Tokenizer, matching_loss
from img2img.train.checkpoint import load_state


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> types.SimpleNamespace:
    tmp = tmp_path_factory.mktemp("stackgan")
    data = make_data(tmp / "shapes")
    te = text_encoder(data, tmp / "te")
    s1 = stage1(data, tmp / "te", tmp / "s1")
    s2 = stage2(data, tmp / "s1", tmp / "s2")
    return types.SimpleNamespace(tmp=tmp, data=data, te=te, s1=s1, s2=s2)


def test_text_encoder_exports_its_tokenizer_built_from_the_training_captions(runs) -> None:
    card = json.loads(runs.te.exported[0].with_suffix(".json").read_text())
    tok = Tokenizer.from_dict(card["inputs"]["tokenizer"])
    assert {"red", "circle", "background", *SHAPES, *COLOUR_NAMES} <= set(tok.vocab)
    assert card["arch"] == "SentenceEncoder" and card["arch_kwargs"]["vocab_size"] == len(tok)
    assert "retrieval_top1" in runs.te.metrics and "TI/match" in runs.te.losses
    assert tok.encode("a purple circle").unknown == ["purple"]
    from img2img.errors import Img2ImgError
    from img2img.infer.model import load
    from img2img.weights.format import read_card

    assert read_card(runs.te.exported[0]).extra["role"] == "text_encoder"  # its card passes validation
    with pytest.raises(Img2ImgError, match="a text encoder for training StackGAN, not a generator"):
        load(runs.te.exported[0])


def test_matching_loss_is_lower_for_matching_pairs() -> None:
    torch.manual_seed(0)
    text = torch.randn(8, 16)
    matched = matching_loss(text, text + 0.05 * torch.randn(8, 16))
    shuffled = matching_loss(text, text[torch.randperm(8)])
    assert matched < shuffled


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    z = torch.zeros(4, 8)
    assert float(kl_loss(z, z, "mean")) == pytest.approx(0.0)
    assert float(kl_loss(z + 1, z, "mean")) == pytest.approx(0.5)


def test_both_stages_train_and_log_the_matching_aware_terms(runs) -> None:
    assert {"G/gan", "G/kl", "D/real", "D/fake", "D/wrong"} <= set(runs.s1.losses)
    assert {"G/gan_uncond", "D/real_uncond", "D/fake_uncond"} <= set(runs.s2.losses)
    assert not {"G/gan_uncond"} & set(runs.s1.losses)


def test_stage2_keeps_stage1_frozen(runs) -> None:
    s1 = load_state(runs.s1.checkpoint)["networks"]["G1"]
    s2 = load_state(runs.s2.checkpoint)["networks"]
    for k, v in s1.items():
        assert torch.equal(v, s2["G1"][k]) and torch.equal(v, s2["G2"][f"STAGE1_G.{k}"]), k


def test_d_wrong_term_uses_a_caption_of_other_content(runs) -> None:
    from img2img.recipes import RECIPES
    from img2img.train.config import from_dict

    state = load_state(runs.s1.checkpoint)
    cfg = from_dict(state["config"])
    recipe = RECIPES["stackgan"](cfg.spec, seed=0)
    recipe.load_state_dict(state["recipe"])
    nets = recipe.build_networks()
    for k, net in nets.items():
        net.load_state_dict(state["networks"][k])
    data = recipe.make_dataset()
    samples = [data[i] for i in range(8)]
    tok = recipe.tokenizer
    for s in samples:  # the mismatched caption names another (shape, colour, background)
        words = tok.decode(s["wrong_ids"].tolist()).split()
        shape, colour, background = (int(v) for v in s["labels"])
        bg = words[words.index("background") - 1]
        own = {SHAPES[shape], COLOUR_NAMES[colour]} <= set(words) and bg == COLOUR_NAMES[background]
        assert not own, words
    batch = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in samples[0]}
    scratch = {}
    torch.manual_seed(1)
    recipe.losses("G", batch, nets, scratch)
    terms = recipe.losses("D", batch, nets, scratch)
    d, ca = nets["D1"], nets["G1"].ca_net
    with torch.no_grad():
        wrong_mu, _ = ca.encode(nets["T"](batch["wrong_ids"], batch["wrong_length"]))
        logits = d.get_cond_logits(d(batch["image"]), wrong_mu)
    expected = 0.5 * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
    assert float(terms["wrong"].detach()) == pytest.approx(float(expected), rel=1e-4)
    same = dict(batch, wrong_ids=batch["ids"], wrong_length=batch["length"])
    assert float(recipe.losses("D", same, nets, dict(scratch))["wrong"].detach()) != pytest.approx(
        float(terms["wrong"].detach())
    )


def test_resume_continues_from_the_last_checkpoint(runs) -> None:
    more = stage1(runs.data, runs.tmp / "te", runs.tmp / "s1_resume", steps=2)
    again = stage1(runs.data, runs.tmp / "te", runs.tmp / "s1_resume", steps=3)
    assert more.step == 2 and again.step == 3
    rows = [json.loads(line) for line in (runs.tmp / "s1_resume" / "stats.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in rows if "loss" in r]
    assert logged == [1, 2, 3]  # the second run started at step 2, not from scratch


def test_export_loads_and_generates_each_stage(runs) -> None:
    path = runs.s2.exported[0]
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["task"] == "generate" and set(card["networks"]) == {"T"}
    model = img2img.load(str(path), device="cpu")
    assert sorted(model.stages) == [1, 2]
    out2 = model("a red circle on a blue background", n=2, seed=3)[0]
    out1 = model(["a red circle on a purple background"], n=1, seed=3, stage=1)[0]
    assert out2.images[0].shape == (32, 32, 3) and out1.images[0].shape == (TINY_G1["image_size"],) * 2 + (3,)
    assert out1.unknown_words == ["purple"] and out2.unknown_words == []
    assert not (out2.images[0] == out2.images[1]).all()
    s1 = img2img.load(str(runs.s1.exported[0]), device="cpu")
    assert sorted(s1.stages) == [1]


def test_generate_cli_on_the_stage2_export(runs, tmp_path: Path) -> None:
    w = str(runs.s2.exported[0])
    assert main(["generate", str(tmp_path / "o"), "--weights", w, "--text", "a red circle on a blue background",
                 "-n", "2", "--quiet"]) == 0  # fmt: skip
    assert len(list((tmp_path / "o").glob("*.png"))) == 2
    assert (
        main(
            [
                "generate",
                str(tmp_path / "o"),
                "--weights",
                w,
                "--text",
                "a red circle on a blue background",
                "-n",
                "2",
                "--quiet",
            ]
        )
        != 0
    )  # fmt: skip - no silent overwrite


def test_stage2_needs_a_stage1_source(tmp_path: Path) -> None:
    from stackgan_helpers import CONFIGS

    from img2img.train.config import load_config

    with pytest.raises(ConfigError, match="stage1"):
        load_config(CONFIGS / "shapes_stage2.yaml", ["stage1=null"])
    with pytest.raises(ConfigError, match="text_encoder"):
        load_config(CONFIGS / "shapes_stage1.yaml", ["text_encoder=null"])


def test_data_shapes_command_writes_the_set_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    assert main(["data", "shapes", str(out), "--n", "12", "--size", "16", "--seed", "1"]) == 0
    assert len(list(out.glob("*.png"))) == 12 and (out / "split.json").is_file()
    assert "held out" in capsys.readouterr().out
    assert main(["data", "shapes", str(out), "--n", "12", "--size", "16"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "shapes", str(out), "--n", "10", "--size", "16", "--overwrite"]) == 0
    assert len(list(out.glob("*.png"))) == 10
