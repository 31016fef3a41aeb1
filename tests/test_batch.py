"""Batch runner: job collection (recursion, templates, formats), refusal to overwrite, collisions,
bit depth / grey / alpha / ICC kept, per-file failures, rank sharding and Ctrl-C."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from img2img.devices import launcher_env as dist_env
from img2img.errors import ConfigError
from img2img.infer.batch import BatchOptions, collect_jobs, report_lines, run_batch


def _double(img) -> tuple[np.ndarray, dict]:
    """A real, model-free process: nearest-neighbour x2 of every channel (alpha kept last)."""
    x = img.rgb if img.alpha is None else np.concatenate([img.rgb, img.alpha[..., None]], axis=2)
    return x.repeat(2, axis=0).repeat(2, axis=1), {}


def _png(path: Path, size=(6, 5), mode="RGB", fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    chans = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = rng.integers(0, 256, (size[1], size[0], chans), dtype=np.uint8)
    Image.fromarray(a[..., 0] if chans == 1 else a, mode).save(path, format=fmt)
    return path


def _opts(inputs, out, **kw) -> BatchOptions:
    return BatchOptions(inputs=[Path(p) for p in inputs], output=Path(out), **kw)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_recursive_mirrors_tree_and_skips_non_images(tmp_path):
    src = tmp_path / "in"
    _png(src / "a.png")
    _png(src / "sub" / "b.jpg")
    _png(src / "sub" / "deep" / "c.png")
    _png(src / ".hidden" / "d.png")  # hidden folders are never read
    (src / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (src / "notes.txt").write_text("not an image")
    report = run_batch(_opts([src], tmp_path / "out", recursive=True), _double, progress=False)
    assert _files(tmp_path / "out") == ["a.png", "sub/b.jpg", "sub/deep/c.png"]
    assert report.failed == [] and report.exit_code == 0
    assert any(".DS_Store" in n and "notes.txt" in n for n in report.notes)
    with Image.open(tmp_path / "out" / "sub" / "deep" / "c.png") as im:
        assert im.size == (12, 10)


def test_without_recursive_subfolders_are_ignored_with_one_note(tmp_path):
    src = tmp_path / "in"
    _png(src / "a.png")
    _png(src / "sub1" / "b.png")
    _png(src / "sub2" / "c.png")
    jobs = collect_jobs(_opts([src], tmp_path / "out"))
    assert [s.name for s, _ in jobs] == ["a.png"]
    report = run_batch(_opts([src], tmp_path / "out"), _double, progress=False)
    notes = [n for n in report.notes if "subfolder" in n]
    assert len(notes) == 1 and "2 subfolder" in notes[0] and "--recursive" in notes[0]


def test_output_folder_inside_input_is_not_read_back(tmp_path):
    src = tmp_path / "in"
    _png(src / "a.png")
    _png(src / "out" / "old.png")  # an earlier run's result
    jobs = collect_jobs(_opts([src], src / "out", recursive=True))
    assert [s.name for s, _ in jobs] == ["a.png"]


def test_single_file_to_folder_and_to_file(tmp_path):
    f = _png(tmp_path / "photo.jpg")
    assert collect_jobs(_opts([f], tmp_path / "out")) == [(f, tmp_path / "out" / "photo.jpg")]
    report = run_batch(_opts([f], tmp_path / "big.png"), _double, progress=False)
    assert report.done == [tmp_path / "big.png"]
    with Image.open(tmp_path / "big.png") as im:
        assert im.format == "PNG" and im.size == (12, 10)


def test_name_template_fields_and_errors(tmp_path):
    f = _png(tmp_path / "in" / "cat.jpg")
    fields = {"scale": 4, "model": "tiny"}
    jobs = collect_jobs(_opts([f], tmp_path / "o", name_template="{name}_x{scale}_{model}", template_fields=fields))
    assert jobs[0][1].name == "cat_x4_tiny.jpg"
    jobs = collect_jobs(_opts([f], tmp_path / "o", name_template="{name}.{ext}", ext="png"))
    assert jobs[0][1].name == "cat.png"  # the extension is not doubled
    jobs = collect_jobs(_opts([f], tmp_path / "o", name_template="{name}@{scale}x", template_fields={"scale": 2.5}))
    assert jobs[0][1].name == "cat@2.5x.jpg"
    with pytest.raises(ConfigError, match=r"unknown field \{size\}.*\{name\}"):
        collect_jobs(_opts([f], tmp_path / "o", name_template="{name}_{size}"))
    with pytest.raises(ConfigError, match="plain file name"):
        collect_jobs(_opts([f], tmp_path / "o", name_template="../{name}"))


def test_ext_auto_keeps_format_where_it_can_and_explicit_ext_converts(tmp_path):
    src = tmp_path / "in"
    _png(src / "a.jpg")
    _png(src / "b.gif", fmt="GIF")
    _png(src / "c.webp", mode="RGBA")
    _png(src / "d.png")
    auto = {s.name: d.name for s, d in collect_jobs(_opts([src], tmp_path / "o"))}
    assert auto == {"a.jpg": "a.jpg", "b.gif": "b.png", "c.webp": "c.webp", "d.png": "d.png"}
    report = run_batch(_opts([src], tmp_path / "o", ext="jpg"), _double, progress=False)
    # c.webp has alpha: JPEG cannot store it, so that file fails with a way out; the others convert.
    assert _files(tmp_path / "o") == ["a.jpg", "b.jpg", "d.jpg"]
    assert [(s.name, "alpha" in r and "--ext png" in r) for s, r in report.failed] == [("c.webp", True)]
    with Image.open(tmp_path / "o" / "b.jpg") as im:
        assert im.format == "JPEG"


def test_auto_switches_to_png_when_the_result_gains_alpha(tmp_path):
    f = _png(tmp_path / "in" / "a.jpg")

    def add_alpha(img):
        x, _ = _double(img)
        return np.concatenate([x, np.full(x.shape[:2] + (1,), 0.5, np.float32)], axis=2), {}

    report = run_batch(_opts([f], tmp_path / "o"), add_alpha, progress=False)
    assert report.done == [tmp_path / "o" / "a.png"]
    assert any("cannot hold alpha" in n for n in report.notes)
    with Image.open(report.done[0]) as im:
        assert im.mode == "RGBA"


def test_existing_output_refused_skipped_or_overwritten(tmp_path):
    f = _png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    report = run_batch(_opts([f], out), _double, progress=False)
    assert (out / "a.png").read_bytes() == b"precious"
    assert report.exit_code == 1 and "exists; use --overwrite or --skip-existing" in report.failed[0][1]
    report = run_batch(_opts([f], out, skip_existing=True), _double, progress=False)
    assert (out / "a.png").read_bytes() == b"precious"
    assert report.exit_code == 0 and len(report.skipped) == 1 and report.done == []
    report = run_batch(_opts([f], out, overwrite=True), _double, progress=False)
    assert report.done == [out / "a.png"]
    with Image.open(out / "a.png") as im:
        assert im.size == (12, 10)
    with pytest.raises(ConfigError, match="exclude each other"):
        collect_jobs(_opts([f], out, overwrite=True, skip_existing=True))


def test_two_inputs_with_the_same_output_name(tmp_path):
    src = tmp_path / "in"
    _png(src / "a.jpg")
    _png(src / "a.png")
    report = run_batch(_opts([src], tmp_path / "o", ext="png"), _double, progress=False)
    assert report.done == [tmp_path / "o" / "a.png"]
    assert len(report.failed) == 1
    loser, reason = report.failed[0]
    assert loser.name == "a.png" and "also the output of" in reason and "a.jpg" in reason


def test_output_folder_equal_to_input_never_overwrites_the_input(tmp_path):
    f = _png(tmp_path / "a.png")
    before = f.read_bytes()
    report = run_batch(_opts([tmp_path], tmp_path, overwrite=True), _double, progress=False)
    assert f.read_bytes() == before
    assert "would overwrite an input" in report.failed[0][1]


def test_16bit_png_stays_16bit_unless_the_format_cannot(tmp_path):
    a = (np.arange(7 * 5 * 3).reshape(5, 7, 3) * 1000 % 65536).astype(np.uint16)
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), a)
    report = run_batch(_opts([src], tmp_path / "o"), _double, progress=False)
    back = cv2.imread(str(report.done[0]), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (10, 14, 3)
    np.testing.assert_array_equal(back[::2, ::2], a)  # values survive at full precision
    report = run_batch(_opts([src], tmp_path / "j", ext="jpg"), _double, progress=False)
    assert report.done and any("8-bit" in n for n in report.notes)


def test_grey_stays_grey_and_icc_profile_passes_through(tmp_path):
    _png(tmp_path / "in" / "g.png", mode="L")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in" / "c.png", icc_profile=icc)
    report = run_batch(_opts([tmp_path / "in"], tmp_path / "o"), _double, progress=False)
    assert report.exit_code == 0
    with Image.open(tmp_path / "o" / "g.png") as im:
        assert im.mode == "L" and im.size == (12, 10)
    with Image.open(tmp_path / "o" / "c.png") as im:
        assert im.info.get("icc_profile") == icc


def test_corrupt_file_and_ds_store_among_good_ones(tmp_path):
    src = tmp_path / "in"
    _png(src / "a.png")
    _png(src / "c.png")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (src / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    report = run_batch(_opts([src], tmp_path / "o"), _double, progress=False)
    assert _files(tmp_path / "o") == ["a.png", "c.png"]
    assert [p.name for p, _ in report.failed] == ["b.png"] and report.exit_code == 1
    text = "\n".join(report_lines(report))
    assert "1 file(s) failed" in text and "b.png" in text
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".") for p in (tmp_path / "o").iterdir())


def test_out_of_memory_fails_only_that_file(tmp_path):
    src = tmp_path / "in"
    for n in "abc":
        _png(src / f"{n}.png")

    def flaky(img):
        if Path(img.path).name == "b.png":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return _double(img)

    report = run_batch(_opts([src], tmp_path / "o"), flaky, progress=False)
    assert _files(tmp_path / "o") == ["a.png", "c.png"]
    assert "out of memory" in report.failed[0][1] and "--tile" in report.failed[0][1]


def test_rank_sharding_covers_every_file_exactly_once(tmp_path):
    src = tmp_path / "in"
    for i in range(7):
        _png(src / f"{i}.png")
    opts = _opts([src], tmp_path / "o")
    reports = [run_batch(opts, _double, rank=r, world=3, progress=False) for r in range(3)]
    done = [p.name for r in reports for p in r.done]
    assert sorted(done) == [f"{i}.png" for i in range(7)]
    assert [len(r.done) for r in reports] == [3, 2, 2]
    assert all(r.failed == [] for r in reports)


def test_dist_env_reads_the_launcher_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert dist_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist_env() == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ConfigError, match="RANK=4"):
        dist_env()


def test_ctrl_c_stops_after_the_current_file(tmp_path):
    src = tmp_path / "in"
    for n in "abc":
        _png(src / f"{n}.png")
    messages: list[str] = []
    before = signal.getsignal(signal.SIGINT)

    def interrupted_once(img):
        if Path(img.path).name == "a.png":
            os.kill(os.getpid(), signal.SIGINT)  # delivered now; the handler only sets a flag
        return _double(img)

    report = run_batch(_opts([src], tmp_path / "o"), interrupted_once, progress=False, log=messages.append)
    assert _files(tmp_path / "o") == ["a.png"]  # the current file was finished and written
    assert report.interrupted and report.exit_code == 130
    assert any("2 file(s) not processed" in n for n in report.notes) and messages
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_second_ctrl_c_abandons_the_current_file_without_partial_output(tmp_path):
    src = tmp_path / "in"
    for n in "ab":
        _png(src / f"{n}.png")

    def impatient(img):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return _double(img)

    report = run_batch(_opts([src], tmp_path / "o"), impatient, progress=False)
    assert report.interrupted and report.done == []
    assert not (tmp_path / "o").exists() or _files(tmp_path / "o") == []


def test_missing_input_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="input not found"):
        collect_jobs(_opts([tmp_path / "nope"], tmp_path / "o"))
