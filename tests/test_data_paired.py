"""pix2pix and CycleGAN training data: identical crop/flip for both halves of a pair, both layouts,
direction, preprocess modes, grey and 16-bit files, corrupt files, clear errors, and real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.config import parse
from img2img.data.base import skip_collate
from img2img.data.paired import PairedDataConfig, PairedDataset
from img2img.data.unpaired import UnpairedDataConfig, UnpairedDataset
from img2img.errors import ConfigError
from img2img.io.images import read_image, write_image

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data"))


def noise(h: int, w: int, seed: int, c: int = 3) -> np.ndarray:
    """8-bit-exact random pixels in [0.2, 0.8]: every window is unique, and bicubic resizing does not clip."""
    rng = np.random.default_rng(seed)
    return rng.integers(51, 205, size=(h, w, c)).astype(np.float32) / 255.0


def aligned_folder(root: Path, n: int = 3, h: int = 48, w: int = 48) -> dict[str, np.ndarray]:
    """n side-by-side files whose B half is 1 - A, so A_t + B_t = 0 after any shared linear resampling."""
    root.mkdir(parents=True, exist_ok=True)
    ab = {}
    for i in range(n):
        a = noise(h, w, i)
        ab[str(i)] = np.concatenate([a, 1.0 - a], axis=1)
        write_image(root / f"{i}.png", ab[str(i)])
    return ab


def to01(t: torch.Tensor) -> np.ndarray:
    return ((t + 1) / 2).permute(1, 2, 0).numpy()


def find_window(crop: np.ndarray, img: np.ndarray) -> tuple[int, int, bool] | None:
    s = crop.shape[0]
    for flip in (False, True):
        src = img[:, ::-1] if flip else img
        for top in range(img.shape[0] - s + 1):
            for left in range(img.shape[1] - s + 1):
                if np.allclose(src[top : top + s, left : left + s], crop, atol=1e-6):
                    return top, left, flip
    return None


def test_aligned_pairs_get_the_same_random_crop_and_flip(tmp_path: Path) -> None:
    ab = aligned_folder(tmp_path / "ab", n=2)
    ds = PairedDataset(PairedDataConfig(root=str(tmp_path / "ab"), preprocess="crop", crop_size=32), seed=3)
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            assert s["A"].shape == s["B"].shape == (3, 32, 32) and s["key"] == str(i)
            full = ab[s["key"]]
            where = find_window(to01(s["A"]), full[:, :48])
            assert where is not None
            assert find_window(to01(s["B"]), full[:, 48:]) == where  # same window, same flip
            seen.add(where)
    assert len(seen) > 6 and {w[2] for w in seen} == {False, True}


def test_resize_and_crop_resizes_both_halves_identically(tmp_path: Path) -> None:
    aligned_folder(tmp_path / "ab", n=2, h=40, w=50)
    ds = PairedDataset(PairedDataConfig(root=str(tmp_path / "ab"), load_size=40, crop_size=32))
    for i in range(len(ds)):
        s = ds[i]
        assert s["A"].shape == (3, 32, 32) and s["A"].dtype == torch.float32
        assert -1 <= float(s["A"].min()) and float(s["A"].max()) <= 1
        assert torch.allclose(s["A"] + s["B"], torch.zeros(()), atol=1e-5)


def test_direction_btoa_makes_the_right_half_the_input(tmp_path: Path) -> None:
    ab = aligned_folder(tmp_path / "ab", n=1, h=32, w=40)
    for direction, a_half in (("AtoB", slice(0, 40)), ("BtoA", slice(40, 80))):
        cfg = PairedDataConfig(root=str(tmp_path / "ab"), direction=direction, preprocess="none", flip=False)
        s = PairedDataset(cfg)[0]
        assert np.allclose(to01(s["A"]), ab["0"][:, a_half], atol=1e-6)


def test_folders_layout_matches_files_by_name(tmp_path: Path) -> None:
    for sub, ext in (("A", ".png"), ("B", ".bmp")):
        for name in ("x/1", "2"):
            (tmp_path / sub / name).parent.mkdir(parents=True, exist_ok=True)
            write_image(tmp_path / sub / f"{name}{ext}", noise(32, 32, hash((sub, name)) % 1000))
    ds = PairedDataset(PairedDataConfig(root=str(tmp_path), layout="folders", preprocess="none", flip=False))
    assert [it.key for it in ds.items] == ["2", "x/1"]
    s = ds[1]
    assert np.allclose(to01(s["B"]), read_image(tmp_path / "B" / "x" / "1.bmp").rgb, atol=1e-6)
    cfg = PairedDataConfig(layout="folders", dir_A=str(tmp_path / "B"), dir_B=str(tmp_path / "A"), max_dataset_size=1)
    assert len(PairedDataset(cfg)) == 1


def test_clear_errors_for_bad_folders(tmp_path: Path) -> None:
    for sub, names in (("A", ["1", "2", "only_in_a"]), ("B", ["1", "2", "only_in_b"])):
        (tmp_path / sub).mkdir()
        for n in names:
            write_image(tmp_path / sub / f"{n}.png", noise(32, 32, 0))
    with pytest.raises(ConfigError, match=r"only_in_a.*only_in_b"):
        PairedDataset(PairedDataConfig(root=str(tmp_path), layout="folders"))
    os.remove(tmp_path / "A" / "only_in_a.png")
    os.remove(tmp_path / "B" / "only_in_b.png")
    write_image(tmp_path / "B" / "2.png", noise(32, 36, 0))
    with pytest.raises(ConfigError, match=r"same size.*2: A 32x32 vs B 36x32"):
        PairedDataset(PairedDataConfig(root=str(tmp_path), layout="folders"))
    write_image(tmp_path / "odd" / "o.png", noise(32, 33, 0))
    with pytest.raises(ConfigError, match=r"even width.*o.png"):
        PairedDataset(PairedDataConfig(root=str(tmp_path / "odd")))
    write_image(tmp_path / "B" / "2.png", noise(32, 32, 0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no aligned A|B images"):
        PairedDataset(PairedDataConfig(root=str(tmp_path / "empty")))
    with pytest.raises(ConfigError, match="not found"):
        PairedDataset(PairedDataConfig(root=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="smaller than data.crop_size=64"):
        PairedDataset(PairedDataConfig(root=str(tmp_path), layout="folders", preprocess="crop", crop_size=64))
    write_image(tmp_path / "A" / "1.jpg", noise(32, 32, 0))
    with pytest.raises(ConfigError, match="same name"):
        PairedDataset(PairedDataConfig(root=str(tmp_path), layout="folders"))
    with pytest.raises(ConfigError, match="larger than data.load_size"):
        PairedDataConfig(root="x", load_size=256, crop_size=286)
    with pytest.raises(ConfigError, match="1 .grey. or 3"):
        PairedDataConfig(root="x", in_channels=4)
    with pytest.raises(ConfigError, match="data.root is empty"):
        PairedDataConfig()


def test_config_loads_from_yaml_data() -> None:
    cfg = parse(PairedDataConfig, {"root": "f/train", "direction": "BtoA", "preprocess": "crop"}, "data")
    assert cfg.direction == "BtoA" and cfg.load_size == 286 and cfg.crop_size == 256
    with pytest.raises(ConfigError, match="data.preprocess.*did you mean crop"):
        parse(PairedDataConfig, {"root": "f", "preprocess": "crpo"}, "data")
    with pytest.raises(ConfigError, match="data.serial: unknown key"):
        parse(UnpairedDataConfig, {"root": "h", "serial": True}, "data")


def test_preprocess_modes_give_the_documented_sizes(tmp_path: Path) -> None:
    write_image(tmp_path / "ab" / "0.png", noise(42, 2 * 58, 0))  # halves 58 wide, 42 high

    def shape(**kw: object) -> tuple[int, ...]:
        return tuple(PairedDataset(PairedDataConfig(root=str(tmp_path / "ab"), **kw))[0]["A"].shape)

    assert shape(load_size=40, crop_size=24) == (3, 24, 24)
    assert shape(preprocess="crop", crop_size=40) == (3, 40, 40)
    # scale_width: width -> 48, height 48 * 42 / 58 = 34.8 -> 35, then to the nearest multiple of 4.
    assert shape(preprocess="scale_width", load_size=48, crop_size=16) == (3, 36, 48)
    assert shape(preprocess="scale_width", load_size=48, crop_size=40) == (3, 40, 48)  # never below the crop
    assert shape(preprocess="scale_width_and_crop", load_size=48, crop_size=32) == (3, 32, 32)
    assert shape(preprocess="none") == (3, 40, 56)
    assert shape(preprocess="none", size_multiple=32) == (3, 32, 64)


def test_grey_and_16_bit_files(tmp_path: Path) -> None:
    a16 = np.random.default_rng(0).integers(0, 65536, size=(32, 32, 1)).astype(np.float32) / 65535.0
    write_image(tmp_path / "A" / "k.png", a16, bit_depth=16)
    rgb = noise(32, 32, 1)
    write_image(tmp_path / "B" / "k.png", rgb)
    base = {"root": str(tmp_path), "layout": "folders", "preprocess": "none", "flip": False}
    s = PairedDataset(PairedDataConfig(**base))[0]
    assert s["A"].shape == (3, 32, 32) and torch.equal(s["A"][0], s["A"][2])  # grey file in an RGB domain
    assert np.abs(to01(s["A"])[..., :1] - a16).max() < 1e-6  # all 16 bits kept
    s = PairedDataset(PairedDataConfig(**base, in_channels=1, out_channels=1))[0]
    assert s["A"].shape == s["B"].shape == (1, 32, 32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert np.allclose(to01(s["B"])[..., 0], luma, atol=1e-6)


def test_corrupt_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    aligned_folder(tmp_path / "ab", n=2, h=32, w=32)
    (tmp_path / "ab" / "bad.png").write_bytes(b"not an image at all")
    ds = PairedDataset(PairedDataConfig(root=str(tmp_path / "ab"), preprocess="crop", crop_size=32))
    samples = [ds[i] for i in range(len(ds))]
    assert [s is None for s in samples] == [False, False, True]  # sorted: 0, 1, bad
    batch = skip_collate(samples)
    assert batch["A"].shape == (2, 3, 32, 32) and batch["_skipped"] == 1


def test_samples_are_reproducible_per_seed_and_epoch(tmp_path: Path) -> None:
    aligned_folder(tmp_path / "ab", n=1)
    cfg = PairedDataConfig(root=str(tmp_path / "ab"), load_size=48, crop_size=24)
    a, b = PairedDataset(cfg, seed=5), PairedDataset(cfg, seed=5)
    assert torch.equal(a[0]["A"], b[0]["A"])
    crops = set()
    for epoch in range(5):
        a.set_epoch(epoch)
        crops.add(a[0]["A"].numpy().tobytes())
    assert len(crops) > 1


def unpaired_folders(root: Path, n_a: int, n_b: int) -> None:
    for i in range(n_a):
        write_image(root / "trainA" / f"a{i}.png", noise(40, 40, i))
    for i in range(n_b):
        write_image(root / "trainB" / f"b{i}.png", noise(40, 40, 100 + i, c=1 if i == 0 else 3))


def test_unpaired_samples_and_grey_images(tmp_path: Path) -> None:
    unpaired_folders(tmp_path, 5, 3)
    cfg = UnpairedDataConfig(root=str(tmp_path), load_size=36, crop_size=32, serial_batches=True)
    ds = UnpairedDataset(cfg)
    assert len(ds) == 5
    keys = [(ds[i]["key_A"], ds[i]["key_B"]) for i in range(5)]
    assert keys == [(f"trainA/a{i}", f"trainB/b{i % 3}") for i in range(5)]
    grey = ds[0]["B"]  # b0 is a grey file in an RGB domain
    assert grey.shape == (3, 32, 32) and torch.allclose(grey[0], grey[1], atol=1e-6)
    assert torch.allclose(grey[1], grey[2], atol=1e-6)  # equal up to the resize's float rounding
    rand = UnpairedDataset(UnpairedDataConfig(root=str(tmp_path), load_size=36, crop_size=32))
    drawn = set()
    for epoch in range(4):
        rand.set_epoch(epoch)
        drawn |= {rand[i]["key_B"] for i in range(5)}
    assert drawn == {"trainB/b0", "trainB/b1", "trainB/b2"}
    swapped = UnpairedDataset(UnpairedDataConfig(root=str(tmp_path), direction="BtoA", out_channels=1))
    s = swapped[0]
    assert s["key_A"].startswith("trainB/") and s["B"].shape == (1, 256, 256)
    assert len(swapped) == 5 and float(s["A"].min()) >= -1


def test_unpaired_errors(tmp_path: Path) -> None:
    unpaired_folders(tmp_path, 2, 0)
    with pytest.raises(ConfigError, match="domain B folder not found"):
        UnpairedDataset(UnpairedDataConfig(root=str(tmp_path)))
    with pytest.raises(ConfigError, match="smaller than data.crop_size=64"):
        UnpairedDataset(UnpairedDataConfig(root=str(tmp_path), dir_B=str(tmp_path / "trainA"), preprocess="crop",
                                           crop_size=64))  # fmt: skip
    with pytest.raises(ConfigError, match="data.root"):
        UnpairedDataConfig()


@pytest.mark.skipif(not (DATA / "facades" / "train").is_dir(), reason=f"facades not found under {DATA}")
def test_real_facades_labels_to_photos() -> None:
    root = DATA / "facades" / "train"
    ds = PairedDataset(PairedDataConfig(root=str(root), direction="BtoA", preprocess="none", flip=False))
    assert len(ds) == 400
    i = next(j for j, it in enumerate(ds.items) if it.key == "1")
    full = read_image(root / "1.jpg").rgb
    s = ds[i]
    assert s["A"].shape == (3, 256, 256)
    assert np.allclose(to01(s["A"]), full[:, 256:], atol=1e-6)  # the label map is the input
    assert np.allclose(to01(s["B"]), full[:, :256], atol=1e-6)
    train = PairedDataset(PairedDataConfig(root=str(root), direction="BtoA"), seed=0)
    batch = skip_collate([train[j] for j in range(4)])
    assert batch["A"].shape == batch["B"].shape == (4, 3, 256, 256) and batch["_skipped"] == 0
    assert -1 <= float(batch["B"].min()) < -0.5 and 0.5 < float(batch["B"].max()) <= 1


@pytest.mark.skipif(not (DATA / "horse2zebra" / "trainB").is_dir(), reason=f"horse2zebra not found under {DATA}")
def test_real_horse2zebra_grey_zebra_becomes_rgb() -> None:
    ds = UnpairedDataset(UnpairedDataConfig(root=str(DATA / "horse2zebra"), serial_batches=True))
    assert len(ds.items_A) == len(ds.items_B) == 400
    j = next(j for j, (key, _) in enumerate(ds.items_B) if key == "trainB/n02391049_226")
    s = ds[j]
    assert s["B"].shape == s["A"].shape == (3, 256, 256)
    assert torch.allclose(s["B"][0], s["B"][1], atol=1e-6) and torch.allclose(s["B"][1], s["B"][2], atol=1e-6)


def test_albumentations_from_the_config_hit_both_images_alike(tmp_path: Path) -> None:
    """A YAML-style transform list runs once per pair with one random draw for A and B: B = 1 - A in
    the files, and a shared rotation (reflected borders, linear interpolation) keeps A_t + B_t = 0."""
    aligned_folder(tmp_path / "ab", n=2)
    spec = [{"name": "Affine", "rotate": [10, 30], "border_mode": 2, "p": 1.0}]  # 2 = cv2.BORDER_REFLECT
    base = {"root": str(tmp_path / "ab"), "preprocess": "none", "flip": False}
    ds = PairedDataset(parse(PairedDataConfig, {**base, "albumentations": spec}), seed=1)
    plain = PairedDataset(parse(PairedDataConfig, base))
    for i in range(2):
        s, p = ds[i], plain[i]
        assert (s["A"] - p["A"]).abs().mean() > 0.05  # rotated
        assert (s["A"] + s["B"]).abs().max() < 1e-3  # by the same angle
    with pytest.raises(ConfigError, match="NoSuchTransform"):
        parse(PairedDataConfig, {**base, "albumentations": [{"name": "NoSuchTransform"}]})
