"""Feature extraction for the distribution metrics: the FID Inception-v3 against torchvision's network patched
with pytorch-fid's FID blocks, the weights loader's checks, both preprocessing conventions against clean-fid's
resizers, folder streaming with unreadable files, the feature cache, and `eval dist` end to end (random
weights; the real FID weights are not on this machine)."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.commands import eval_dist
from img2img.errors import Img2ImgError, WeightsError
from img2img.eval.features import (
    RANDOM_NOTE,
    extract_folder,
    make_extractor,
    preprocess_clean_fid,
    preprocess_pytorch_fid,
)
from img2img.eval.inception import (
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_SHA256,
    load_fid_inception,
    random_inception,
)


@pytest.fixture(scope="module")
def extractor():
    return make_extractor("random", seed=0)


def _save(path, rng: np.random.Generator, h: int, w: int, mode: str = "RGB", scale: int = 256) -> None:
    chans = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = rng.integers(0, scale, (h, w, chans), dtype=np.uint8)
    Image.fromarray(a[:, :, 0] if mode == "L" else a, mode).save(path)


def _torchvision_fid_inception(patched: bool):
    tv = pytest.importorskip("torchvision")
    fid_blocks = pytest.importorskip("pytorch_fid.inception")
    net = tv.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    if patched:  # pytorch-fid's fid_inception_v3(), without its download
        for name, cin, arg in (("5b", 192, 32), ("5c", 256, 64), ("5d", 288, 64)):
            setattr(net, f"Mixed_{name}", fid_blocks.FIDInceptionA(cin, pool_features=arg))
        for name, c7 in (("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)):
            setattr(net, f"Mixed_{name}", fid_blocks.FIDInceptionC(768, channels_7x7=c7))
        net.Mixed_7b, net.Mixed_7c = fid_blocks.FIDInceptionE_1(1280), fid_blocks.FIDInceptionE_2(2048)
    pool = torch.nn.MaxPool2d(3, stride=2)
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", pool, "Conv2d_3b_1x1", "Conv2d_4a_3x3", pool]
    names += [f"Mixed_{n}" for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")]
    trunk = torch.nn.Sequential(*[getattr(net, n) if isinstance(n, str) else n for n in names])
    return net, trunk


def test_architecture_matches_pytorch_fids_fid_inception() -> None:
    ours = random_inception(seed=1)
    ref, trunk = _torchvision_fid_inception(patched=True)
    sd = ours.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    ref.eval()
    x = torch.rand(2, 3, 107, 107) * 2 - 1  # 2x2 maps in the last blocks: their pool padding matters
    with torch.inference_mode():
        pool, logits = ours(x)
        want = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(trunk(x), 1), 1)
        want_logits = want @ ref.fc.weight.T  # bias-free, as the original Inception Score code
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    torch.testing.assert_close(pool, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
    # torchvision's own blocks (padding counted in the average pools, average pool in Mixed_7c) differ
    plain, plain_trunk = _torchvision_fid_inception(patched=False)
    plain.load_state_dict(sd)
    plain.eval()
    with torch.inference_mode():
        other = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(plain_trunk(x), 1), 1)
    assert (other - want).abs().max() > 1e-3


def test_weights_loader_checks_the_digest_and_the_keys(tmp_path, monkeypatch) -> None:
    assert FID_WEIGHTS_SHA256.startswith(FID_WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0])  # name = digest prefix
    net = random_inception(seed=2)
    path = tmp_path / FID_WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    with pytest.raises(WeightsError, match="sha256"):
        load_fid_inception(path)  # our random file is not the published one
    loaded = load_fid_inception(path, sha256=None)
    x = torch.rand(1, 3, 99, 99)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x)[0], net(x)[0])
    sd = net.state_dict()
    sd.pop("fc.weight")
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="fc.weight"):
        load_fid_inception(tmp_path / "partial.pth", sha256=None)
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsError, match="--inception-weights") as e:
        load_fid_inception(tmp_path / "absent.pth")
    assert str(tmp_path / "home" / "weights" / FID_WEIGHTS_FILE) in str(e.value)


def test_preprocessing_matches_clean_fids_resizers() -> None:
    resize = pytest.importorskip("cleanfid.resize")
    u8 = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rgb = u8.astype(np.float32) / 255
    clean = preprocess_clean_fid(rgb)
    want = (resize.build_resizer("clean")(u8).transpose(2, 0, 1) - 128) / 128  # its TF-graph normalisation
    assert clean.shape == (3, 299, 299)
    np.testing.assert_allclose(clean.numpy(), want, atol=1e-6)
    legacy = resize.build_resizer("legacy_pytorch")(u8.astype(np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess_pytorch_fid(rgb).numpy(), legacy / 255 * 2 - 1, atol=1e-5)
    assert (preprocess_pytorch_fid(rgb) - clean).abs().mean() > 1e-3  # the conventions differ
    grey = preprocess_pytorch_fid(rgb[:, :, :1])
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2])


def test_folder_extraction_skips_bad_files_and_caches(tmp_path, extractor) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    _save(folder / "a.png", rng, 40, 52, "RGBA")
    _save(folder / "b.jpg", rng, 64, 30, "L")
    (folder / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "notes.txt").write_text("not an image")
    fs = extract_folder(folder, extractor, batch_size=2, cache_dir=tmp_path / "cache")
    assert fs.names == ["a.png", "b.jpg"] and not fs.cached
    assert [n for n, _ in fs.failures] == ["c_broken.png"] and "c_broken.png" in fs.failures[0][1]
    assert fs.pool.shape == (2, 2048) and fs.logits.shape == (2, 1008) and fs.pool.dtype == np.float32
    assert np.isfinite(fs.pool).all() and np.abs(fs.pool[0] - fs.pool[1]).mean() > 1e-3
    # a batch gives each image the features it gets alone (grey repeated, alpha ignored)
    grey = np.asarray(Image.open(folder / "b.jpg"), np.float32)[:, :, None] / 255
    alone, _ = extractor(preprocess_pytorch_fid(grey)[None])
    np.testing.assert_allclose(fs.pool[1], alone[0], rtol=1e-4, atol=1e-5)
    # the second call is served from the cache; a changed file invalidates it
    again = extract_folder(folder, extractor, batch_size=2, cache_dir=tmp_path / "cache")
    assert again.cached and again.names == fs.names and again.failures == fs.failures
    np.testing.assert_array_equal(again.pool, fs.pool)
    os.utime(folder / "a.png", ns=(1, 1))
    assert not extract_folder(folder, extractor, batch_size=2, cache_dir=tmp_path / "cache").cached
    cached = sorted((tmp_path / "cache").glob("features-*.npz"))
    assert len(cached) == 2
    with np.load(cached[0]) as z:  # cached features carry what made them
        assert RANDOM_NOTE in str(z["extractor"]) and str(z["preprocess"]) == "pytorch-fid"


def test_folder_without_readable_images_is_an_error(tmp_path, extractor) -> None:
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(Img2ImgError, match="no readable images"):
        extract_folder(tmp_path, extractor)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Img2ImgError, match="holds no images"):
        extract_folder(tmp_path / "empty", extractor)
    with pytest.raises(Img2ImgError, match="not a folder"):
        extract_folder(tmp_path / "x.png", extractor)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="img2img eval dist")
    eval_dist.add_arguments(p)
    return p


def test_eval_dist_cli_end_to_end_with_random_weights(tmp_path, capsys) -> None:
    rng = np.random.default_rng(1)
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    for i in range(4):
        _save(real / f"r{i}.png", rng, 36, 36)
        _save(fake / f"f{i}.png", rng, 24, 30, scale=100)  # darker: a different distribution
    out = tmp_path / "dist.json"
    argv = ["--real", str(real), "--fake", str(fake), "--extractor", "random", "--metrics", "fid,kid,is,pr,parzen"]
    argv += ["--json", str(out), "--cache", str(tmp_path / "cache"), "--no-progress", "--batch-size", "4"]
    assert eval_dist.run(_parser().parse_args(argv)) == 0
    printed = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in printed and "FID" in printed and "Parzen" in printed
    rep = json.loads(out.read_text())
    assert rep["sizes"] == {"real": 4, "fake": 4} and rep["extractor"] == "random" and rep["note"] == RANDOM_NOTE
    assert rep["preprocessing"] == "pytorch-fid" and rep["seeds"]["kid"] == 0 and "torch" in rep["versions"]
    assert rep["fid"] > 0 and set(rep["kid"]) == {"mean", "std"} and set(rep["is"]) >= {"mean", "std"}
    assert 0 <= rep["precision"] <= 1 and 0 <= rep["recall"] <= 1 and np.isfinite(rep["parzen"]["mean"])
    # 4 images a set: every KID subset is both whole sets, so its std says nothing, and the report says so
    assert rep["kid_subset_size"] == 4 and rep["kid"]["std"] < 1e-12 and "whole of both sets" in rep["kid_note"]
    assert "shows no spread" in printed
    small = tmp_path / "small.json"
    argv3 = ["--real", str(real), "--fake", str(fake), "--extractor", "random", "--metrics", "kid", "--no-progress"]
    eval_dist.run(_parser().parse_args([*argv3, "--kid-subset-size", "3", "--json", str(small), "--cache",
                                        str(tmp_path / "cache")]))  # fmt: skip
    rep3 = json.loads(small.read_text())
    assert rep3["kid"]["std"] > 0 and "kid_note" not in rep3
    # the same folder twice: FID 0, full precision and recall (features from the cache)
    same = tmp_path / "same.json"
    argv2 = ["--real", str(real), "--fake", str(real), "--extractor", "random", "--metrics", "fid,pr", "--no-progress"]
    eval_dist.run(_parser().parse_args(argv2 + ["--json", str(same), "--cache", str(tmp_path / "cache")]))
    rep2 = json.loads(same.read_text())
    assert abs(rep2["fid"]) < 1e-6 and rep2["precision"] == 1.0 and rep2["recall"] == 1.0
    # --json never overwrites silently, and refuses before any work
    with pytest.raises(Img2ImgError, match="--overwrite"):
        eval_dist.run(_parser().parse_args(argv))


def test_eval_dist_refuses_without_weights_and_documents_parzen(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "a").mkdir()
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    args = _parser().parse_args(["--real", str(tmp_path / "a"), "--fake", str(tmp_path / "a")])
    with pytest.raises(Img2ImgError, match="--inception-weights") as e:
        eval_dist.run(args)
    assert str(tmp_path / "home" / "weights" / FID_WEIGHTS_FILE) in str(e.value)
    with pytest.raises(Img2ImgError, match="choose from"):
        eval_dist.run(_parser().parse_args(["--real", "a", "--fake", "a", "--metrics", "fid,lpips"]))
    with pytest.raises(Img2ImgError, match="--kid-subsets must be at least 1"):
        eval_dist.run(_parser().parse_args(["--real", "a", "--fake", "a", "--kid-subsets", "0"]))
    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    helptext = capsys.readouterr().out
    assert "Theis et al. 2016" in helptext and "poor proxy for sample quality" in helptext


def test_eval_dist_is_a_task_of_the_eval_command(tmp_path, monkeypatch, capsys) -> None:
    from img2img.cli import main

    (tmp_path / "a").mkdir()
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    assert main(["eval", "dist", "--real", str(tmp_path / "a"), "--fake", str(tmp_path / "a")]) == 2
    assert "--inception-weights" in capsys.readouterr().err  # one line, no traceback


def test_eval_dist_generates_the_fake_set_from_a_model_first(tmp_path, tiny_labels_model, tiny_text_model, capsys):
    from PIL import Image

    rng = np.random.default_rng(2)
    real, labels = tmp_path / "real", tmp_path / "labels"
    real.mkdir(), labels.mkdir()
    for i in range(3):
        _save(real / f"r{i}.png", rng, 32, 32)
        Image.fromarray(rng.integers(0, 3, (32, 32)).astype(np.uint8)).save(labels / f"l{i}.png")
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(labels / "bad.png")  # id 9: not a class
    base = ["--real", str(real), "--extractor", "random", "--metrics", "fid", "--no-progress"]
    kept = tmp_path / "kept"
    path, _ = tiny_labels_model
    argv = [*base, "--weights", str(path), "--inputs", str(labels), "--save-fake", str(kept), "--seed", "4"]
    assert eval_dist.run(_parser().parse_args(argv)) == 0
    printed = capsys.readouterr().out
    assert "generated 3 image(s)" in printed and "failed: bad.png" in printed and "FID" in printed
    assert sorted(p.name for p in kept.iterdir()) == ["l0.png", "l1.png", "l2.png"]
    out = tmp_path / "t.json"
    argv = [*base, "--weights", str(tiny_text_model), "--text", "a red circle", "--text", "a blue square", "-n", "2",
            "--json", str(out)]  # fmt: skip
    assert eval_dist.run(_parser().parse_args(argv)) == 0
    rep = json.loads(out.read_text())
    assert rep["sizes"]["fake"] == 4 and "generated with" in rep["folders"]["fake"]
    # --record keeps the scores in the model's card, with how they were made
    argv = [*base, "--weights", str(path), "--inputs", str(labels), "--record", "dist_random_test", "--seed", "4"]
    assert eval_dist.run(_parser().parse_args(argv)) == 0
    from img2img.weights.format import read_card

    rec = read_card(path).metrics["dist_random_test"]
    assert rec["fid"] > 0 and rec["sizes"] == {"real": 3, "fake": 3} and "RANDOM" in rec["protocol"]
    assert f"on {labels} (seed 4)" in rec["protocol"]
    with pytest.raises(Img2ImgError, match="--record needs our .safetensors"):
        eval_dist.run(_parser().parse_args([*base, "--fake", str(real), "--record", "x"]))
    with pytest.raises(Img2ImgError, match="--fake DIR .* or --weights"):
        eval_dist.run(_parser().parse_args(base))
    with pytest.raises(Img2ImgError, match="give --inputs DIR, not prompts"):
        eval_dist.run(_parser().parse_args([*base, "--weights", str(path), "--text", "x"]))
