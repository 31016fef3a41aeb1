"""SR training data on real tiny folders: LR/HR alignment with MATLAB bicubic, paired folders,
identical augmentation, corrupt files skipped and counted (also through DataLoader workers),
reproducible sampling, and the blind degradation pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from img2img.data import (
    DegradationConfig,
    PairedAlbumentations,
    SRDataConfig,
    SRDataset,
    augment_pair,
    degrade,
    paired_random_crop,
    skip_collate,
)
from img2img.errors import ConfigError
from img2img.io.resize import imresize

DATA = Path(os.environ.get("IMG2IMG_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def photo(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    """Smooth random uint8 image (a blurred noise field), so resizing is not trivially flat."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, channels)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    return np.rint(img * 255).astype(np.uint8).reshape(h, w, channels)


def write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img[:, :, ::-1] if img.ndim == 3 and img.shape[2] == 3 else img)
    return path


def write_corrupt(folder: Path) -> tuple[Path, Path]:
    """A file with no valid header and a PNG whose pixel data is cut off."""
    folder.mkdir(parents=True, exist_ok=True)
    junk = folder / "junk.png"
    junk.write_bytes(b"this is not an image at all")
    ok, buf = cv2.imencode(".png", photo(64, 64, 99))
    cut = folder / "cut.png"
    cut.write_bytes(buf.tobytes()[: len(buf) // 2])
    return junk, cut


def find_crop(full: np.ndarray, patch: np.ndarray, step: int) -> tuple[int, int]:
    ph = patch.shape[0]
    for y in range(0, full.shape[0] - ph + 1, step):
        for x in range(0, full.shape[1] - ph + 1, step):
            if np.array_equal(full[y : y + ph, x : x + ph], patch):
                return y, x
    raise AssertionError("patch not found in the image")


def hwc_u8(t: torch.Tensor) -> np.ndarray:
    return np.rint(t.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


# ---------------------------------------------------------------- collate


def test_skip_collate_drops_and_counts():
    good = {"lr": torch.zeros(3, 2, 2), "hr": torch.ones(3, 8, 8), "key": "a"}
    batch = skip_collate([good, None, dict(good, key="b"), None])
    assert batch["_skipped"] == 2 and batch["lr"].shape == (2, 3, 2, 2) and batch["key"] == ["a", "b"]
    assert skip_collate([good])["_skipped"] == 0
    assert skip_collate([None, None]) == {"_skipped": 2}


# ---------------------------------------------------------------- bicubic path


def test_bicubic_lr_is_matlab_resize_of_the_hr_crop(tmp_path):
    hr_img = photo(70, 53, 0)  # not multiples of 4: the HR is cropped to 68 x 52
    write(tmp_path / "hr" / "a.png", hr_img)
    ds = SRDataset(SRDataConfig([str(tmp_path / "hr")], scale=4, patch_size=32, augment=False, repeat=6), seed=3)
    lr_full = imresize(hr_img[:68, :52], 0.25)  # uint8 in, uint8 out, MATLAB rounding
    seen = set()
    for i in range(6):
        s = ds[i]
        assert s["lr"].shape == (3, 8, 8) and s["hr"].shape == (3, 32, 32)
        assert s["lr"].dtype == torch.float32 and 0 <= s["lr"].min() and s["hr"].max() <= 1
        hr, lr = hwc_u8(s["hr"]), hwc_u8(s["lr"])
        y, x = find_crop(hr_img[:68, :52], hr, step=4)  # HR crops start at LR pixel corners
        assert np.array_equal(lr, lr_full[y // 4 : y // 4 + 8, x // 4 : x // 4 + 8])
        seen.add((y, x))
        # Downscaling the HR patch itself agrees away from the patch border (kernel support 2 LR px),
        # within one 8-bit level (MATLAB's uint8 resize rounds after each axis).
        own = imresize(s["hr"].numpy().transpose(1, 2, 0).astype(np.float64), 0.25)
        assert np.abs(own[2:-2, 2:-2] - lr[2:-2, 2:-2] / 255.0).max() <= 1 / 255 + 1e-6
    assert len(seen) > 1  # random crops, not a fixed window


def test_augmentation_is_identical_for_lr_and_hr(tmp_path):
    write(tmp_path / "hr" / "a.png", photo(64, 64, 1))
    ds = SRDataset(SRDataConfig([str(tmp_path / "hr")], scale=4, patch_size=32, repeat=12), seed=0)
    for i in range(12):
        s = ds[i]
        own = imresize(s["hr"].numpy().transpose(1, 2, 0).astype(np.float64), 0.25)
        lr = s["lr"].numpy().transpose(1, 2, 0)
        assert np.abs(own[2:-2, 2:-2] - lr[2:-2, 2:-2]).max() <= 1 / 255 + 1e-6


def test_augment_pair_applies_one_symmetry_to_all():
    lr = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)
    hr = np.kron(lr, np.ones((2, 2, 1), dtype=np.float32))  # nearest x2 upscale of lr
    outcomes = set()
    for seed in range(64):
        a, b = augment_pair(lr, hr, rng=np.random.default_rng(seed))
        assert np.array_equal(b, np.kron(a, np.ones((2, 2, 1), dtype=np.float32)))
        assert a.flags.c_contiguous and b.flags.c_contiguous
        outcomes.add(a.tobytes() + bytes(a.shape))
    assert len(outcomes) == 8  # all flips and 90-degree rotations occur
    a, b = augment_pair(lr, hr, rng=np.random.default_rng(0), hflip=False, vflip=False, rot90=False)
    assert np.array_equal(a, lr) and np.array_equal(b, hr)


def test_paired_random_crop_alignment_and_errors():
    lr = np.random.default_rng(0).random((10, 12, 3))
    hr = np.kron(lr, np.ones((3, 3, 1)))
    for seed in range(5):
        a, b = paired_random_crop(lr, hr, 4, 3, np.random.default_rng(seed))
        assert a.shape == (4, 4, 3) and np.array_equal(b, np.kron(a, np.ones((3, 3, 1))))
    with pytest.raises(ValueError, match="not 2x"):
        paired_random_crop(lr, hr, 4, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="smaller"):
        paired_random_crop(lr, hr, 11, 3, np.random.default_rng(0))


def test_paired_albumentations_same_op_on_image_and_mask():
    img = photo(40, 40, 2)
    label = (np.arange(40 * 40).reshape(40, 40) % 7).astype(np.uint8)
    tf = PairedAlbumentations(
        [{"name": "RandomCrop", "height": 24, "width": 24}, {"name": "HorizontalFlip", "p": 0.5}],
        targets={"twin": "image", "label": "mask"},
    )
    a, twin, lab = tf(img, img.copy(), label, rng=np.random.default_rng(5))
    assert a.shape == (24, 24, 3) and np.array_equal(a, twin)
    assert set(np.unique(lab)) <= set(range(7))  # masks are never interpolated
    again = tf(img, img.copy(), label, rng=np.random.default_rng(5))
    assert all(np.array_equal(p, q) for p, q in zip((a, twin, lab), again, strict=True))
    with pytest.raises(ConfigError, match="NoSuchTransform"):
        PairedAlbumentations([{"name": "NoSuchTransform"}])
    with pytest.raises(ValueError, match="partner"):
        tf(img, rng=np.random.default_rng(0))


# ---------------------------------------------------------------- folders, pairing, errors


def test_grey_images_become_rgb_and_keys_name_files(tmp_path):
    write(tmp_path / "hr" / "sub" / "g.png", photo(40, 40, 3, channels=1)[:, :, 0])
    ds = SRDataset(SRDataConfig(str(tmp_path / "hr"), scale=2, patch_size=16, repeat=3), seed=0)
    assert len(ds) == 3
    s = ds[2]
    assert s["hr"].shape == (3, 16, 16) and torch.equal(s["hr"][0], s["hr"][1])
    assert s["key"] == "hr/sub/g.png"


def test_missing_or_empty_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(ConfigError, match="no HR images.*empty"):
        SRDataset(SRDataConfig([str(tmp_path / "empty")]))
    with pytest.raises(ConfigError, match="not found.*nowhere"):
        SRDataset(SRDataConfig([str(tmp_path / "nowhere")]))
    with pytest.raises(ConfigError, match="multiple of data.scale"):
        SRDataConfig([str(tmp_path)], scale=3, patch_size=32)
    with pytest.raises(ConfigError, match="degradation"):
        SRDataConfig([str(tmp_path)], degradation="jpeg")


def test_small_images_are_skipped_and_counted(tmp_path):
    write(tmp_path / "hr" / "big.png", photo(40, 40, 0))
    write(tmp_path / "hr" / "small.png", photo(40, 30, 1))
    ds = SRDataset(SRDataConfig([str(tmp_path / "hr")], scale=2, patch_size=32))
    assert [it.key for it in ds.items] == ["hr/big.png"] and ds.too_small == ["hr/small.png"]
    assert ds.describe()["skipped_too_small"] == 1
    with pytest.raises(ConfigError, match="smaller than data.patch_size=48"):
        SRDataset(SRDataConfig([str(tmp_path / "hr")], scale=2, patch_size=48))


def test_paired_folders_match_by_stem(tmp_path):
    for i, name in enumerate(["a", "b"]):
        hr = photo(40, 36, i)
        write(tmp_path / "hr" / f"{name}.png", hr)
        write(tmp_path / "lr" / f"{name}x4.png", imresize(hr, 0.25))  # DIV2K-style LR names
    cfg = SRDataConfig([str(tmp_path / "hr")], lr_dirs=[str(tmp_path / "lr")], scale=4, patch_size=32, augment=False)
    ds = SRDataset(cfg, seed=0)
    assert [it.lr.name for it in ds.items] == ["ax4.png", "bx4.png"]
    s = ds[1]
    assert s["lr"].shape == (3, 8, 8) and s["key"] == "hr/b.png"
    y, x = find_crop(photo(40, 36, 1), hwc_u8(s["hr"]), step=4)
    assert np.array_equal(hwc_u8(s["lr"]), imresize(photo(40, 36, 1), 0.25)[y // 4 : y // 4 + 8, x // 4 : x // 4 + 8])


def test_hr_and_lr_side_by_side_in_one_folder(tmp_path):
    hr = photo(48, 48, 5)
    write(tmp_path / "set" / "img_001_HR.png", hr)
    write(tmp_path / "set" / "img_001_LR.png", imresize(hr, 0.5))
    paired = SRDataset(SRDataConfig([str(tmp_path / "set")], lr_dirs=[str(tmp_path / "set")], scale=2, patch_size=32))
    assert [(it.hr.name, it.lr.name) for it in paired.items] == [("img_001_HR.png", "img_001_LR.png")]
    synth = SRDataset(SRDataConfig([str(tmp_path / "set")], scale=2, patch_size=32))
    assert [it.hr.name for it in synth.items] == ["img_001_HR.png"]  # the LR file is never used as HR


def test_unmatched_names_and_wrong_sizes_are_config_errors(tmp_path):
    write(tmp_path / "hr" / "a.png", photo(32, 32, 0))
    write(tmp_path / "hr" / "b.png", photo(32, 32, 1))
    write(tmp_path / "lr" / "a.png", photo(8, 8, 0))
    write(tmp_path / "lr" / "c.png", photo(8, 8, 2))
    cfg = SRDataConfig([str(tmp_path / "hr")], lr_dirs=[str(tmp_path / "lr")], scale=4, patch_size=32)
    with pytest.raises(ConfigError, match=r"without an LR partner.*\['b'\].*without an HR partner.*\['c'\]"):
        SRDataset(cfg)
    os.remove(tmp_path / "hr" / "b.png")
    os.remove(tmp_path / "lr" / "c.png")
    assert len(SRDataset(cfg)) == 1
    cfg2 = SRDataConfig([str(tmp_path / "hr")], lr_dirs=[str(tmp_path / "lr")], scale=2, patch_size=32)
    with pytest.raises(ConfigError, match=r"HR size / 2.*HR 32x32 vs LR 8x8"):
        SRDataset(cfg2)
    with pytest.raises(ConfigError, match="one LR folder per HR folder"):
        SRDataConfig([str(tmp_path / "hr")], lr_dirs=[], scale=4)


# ---------------------------------------------------------------- corrupt files, reproducibility


def test_corrupt_files_give_none(tmp_path):
    write(tmp_path / "hr" / "good.png", photo(32, 32, 0))
    write_corrupt(tmp_path / "hr")
    ds = SRDataset(SRDataConfig([str(tmp_path / "hr")], scale=2, patch_size=16))
    keys = [it.key for it in ds.items]
    assert keys == ["hr/cut.png", "hr/good.png", "hr/junk.png"]
    samples = [ds[i] for i in range(3)]
    assert samples[0] is None and samples[2] is None and samples[1]["key"] == "hr/good.png"
    assert skip_collate(samples)["_skipped"] == 2


def test_sampling_is_reproducible_per_seed_epoch_and_index(tmp_path):
    write(tmp_path / "hr" / "a.png", photo(64, 64, 0))
    cfg = SRDataConfig([str(tmp_path / "hr")], scale=4, patch_size=16, repeat=4)
    a, b, c = SRDataset(cfg, seed=7), SRDataset(cfg, seed=7), SRDataset(cfg, seed=8)
    assert all(torch.equal(a[i]["hr"], b[i]["hr"]) for i in range(4))
    assert not all(torch.equal(a[i]["hr"], c[i]["hr"]) for i in range(4))
    assert len({a[i]["hr"].numpy().tobytes() for i in range(4)}) == 4  # repeats draw new crops
    first = a[0]["hr"]
    a.set_epoch(1)
    assert not torch.equal(a[0]["hr"], first)
    a.set_epoch(0)
    assert torch.equal(a[0]["hr"], first)


def test_dataloader_workers_skip_corrupt_files_and_match_single_process(tmp_path):
    for i in range(5):
        write(tmp_path / "hr" / f"img{i}.png", photo(48, 40, i))
    write_corrupt(tmp_path / "hr")
    ds = SRDataset(SRDataConfig([str(tmp_path / "hr")], scale=4, patch_size=16, repeat=2), seed=1)
    assert len(ds) == 14

    def run(loader: DataLoader) -> tuple[int, list[str], torch.Tensor]:
        skipped, keys, lrs = 0, [], []
        for batch in loader:
            skipped += batch["_skipped"]
            if "lr" in batch:
                keys += batch["key"]
                lrs.append(batch["lr"])
        return skipped, keys, torch.cat(lrs)

    kw = dict(batch_size=4, shuffle=False, collate_fn=skip_collate)
    loader = DataLoader(ds, num_workers=2, persistent_workers=True, **kw)
    s0, k0, lr0 = run(loader)
    assert s0 == 4 and len(k0) == 10 and lr0.shape == (10, 3, 4, 4)
    ref0 = run(DataLoader(ds, num_workers=0, **kw))
    assert ref0[0] == s0 and ref0[1] == k0 and torch.equal(ref0[2], lr0)
    ds.set_epoch(1)  # must reach the persistent workers
    s1, k1, lr1 = run(loader)
    ref1 = run(DataLoader(ds, num_workers=0, **kw))
    assert s1 == 4 and k1 == k0 and torch.equal(ref1[2], lr1) and not torch.equal(lr1, lr0)


# ---------------------------------------------------------------- blind degradation


def test_degrade_shape_range_and_determinism():
    hr = photo(64, 48, 0).astype(np.float32) / 255.0
    outs = [degrade(hr, 4, np.random.default_rng(s)) for s in range(6)]
    for lr in outs:
        assert lr.shape == (16, 12, 3) and lr.dtype == np.float32
        assert 0.0 <= lr.min() and lr.max() <= 1.0
        assert np.allclose(lr * 255, np.rint(lr * 255), atol=1e-4)  # 8-bit levels, like a saved file
    assert np.array_equal(outs[0], degrade(hr, 4, np.random.default_rng(0)))
    assert len({o.tobytes() for o in outs}) == 6
    # Degraded, not just resized: on average it departs from the clean bicubic LR.
    clean = imresize(hr.astype(np.float64), 0.25)
    assert np.mean([np.abs(o - clean).mean() for o in outs]) > 0.01


def test_degrade_tiny_inputs_and_errors():
    tiny = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    for s in range(30):  # heavy down-resizes make images smaller than the blur kernel
        assert degrade(tiny, 4, np.random.default_rng(s)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="multiple of scale 4"):
        degrade(np.zeros((10, 8, 3), np.float32), 4, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="jpeg_quality"):
        DegradationConfig(jpeg_quality=(30, 120))
    with pytest.raises(ConfigError, match="resize_probs"):
        DegradationConfig(resize_probs=(0.5, 0.5, 0.5))


def test_realesrgan_dataset_mode(tmp_path):
    write(tmp_path / "hr" / "a.png", photo(40, 40, 0))
    ds = SRDataset(SRDataConfig([str(tmp_path / "hr")], scale=4, patch_size=32, degradation="realesrgan"), seed=0)
    s = ds[0]
    assert s["lr"].shape == (3, 8, 8) and s["hr"].shape == (3, 32, 32)
    assert torch.equal(ds[0]["lr"], s["lr"])
    with pytest.raises(ConfigError, match="synthesised LR"):
        SRDataConfig([str(tmp_path)], lr_dirs=[str(tmp_path)], degradation="realesrgan")


# ---------------------------------------------------------------- real data


def test_set5_bicubic_lr_matches_the_published_lr_files():
    folder = DATA / "sr" / "Set5" / "image_SRF_4"
    if not folder.is_dir():
        pytest.skip(reason=f"Set5 not found at {folder} (set IMG2IMG_DATA)")
    synth = SRDataset(SRDataConfig([str(folder)], scale=4, patch_size=96, augment=False), seed=0)
    paired = SRDataset(SRDataConfig([str(folder)], lr_dirs=[str(folder)], scale=4, patch_size=96, augment=False))
    assert len(synth) == len(paired) == 5
    for i in range(5):
        a, b = synth[i], paired[i]
        assert a["key"] == b["key"] and torch.equal(a["hr"], b["hr"])
        assert (a["lr"] - b["lr"]).abs().max().item() <= 1 / 255 + 1e-6


def test_t91_patches_and_small_images():
    folder = DATA / "sr" / "T91"
    if not folder.is_dir():
        pytest.skip(reason=f"T91 not found at {folder} (set IMG2IMG_DATA)")
    ds = SRDataset(SRDataConfig([str(folder)], scale=4, patch_size=128, cache=False), seed=0)
    assert len(ds) + len(ds.too_small) == 91 and 0 < len(ds.too_small) < 91
    for key in ds.too_small:
        h, w = cv2.imread(str(folder / key.split("/", 1)[1])).shape[:2]
        assert min(h, w) < 128
    for i in range(0, len(ds), 17):
        s = ds[i]
        assert s["hr"].shape == (3, 128, 128) and s["lr"].shape == (3, 32, 32)
