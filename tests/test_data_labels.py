"""Label map -> photo training data: the facades palette recovered from the real label maps, id folders
matched by scene name (Cityscapes suffixes), label_nc scanned with a report, bad ids named with file /
id / range, nearest resizing that keeps the id set, labels and photos flipped together, instance edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.data.labels import LabelDataConfig, LabelDataset, label_items, scan_label_nc
from img2img.data.palettes import FACADES_CLASSES, FACADES_PALETTE, derive_palette
from img2img.errors import ConfigError, LabelError
from img2img.io.images import write_image
from img2img.io.labels import colourise

PAL = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (90, 90, 90)]


def blocks(h: int, w: int, ids: list[int], seed: int = 0) -> np.ndarray:
    """HxW ids in vertical stripes, left to right in the order of `ids`, with jittered widths."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, w, len(ids) + 1)
    edges[1:-1] += rng.uniform(-0.2, 0.2, len(ids) - 1) * w / len(ids)
    out = np.empty((h, w), np.uint8)
    for k, (a, b) in enumerate(zip(edges[:-1].astype(int), edges[1:].astype(int), strict=True)):
        out[:, a:b] = ids[k]
    return out


def id_folders(root: Path, labels: list[np.ndarray], *, inst: list[np.ndarray] | None = None,
               names: tuple[str, str] = ("{i}", "{i}")) -> Path:  # fmt: skip
    """root/labels (8-bit id PNGs), root/images (the label colours as photos) (+ root/instances, 16-bit)."""
    for sub in ("labels", "images") + (("instances",) if inst is not None else ()):
        (root / sub).mkdir(parents=True)
    for i, ids in enumerate(labels):
        Image.fromarray(ids.astype(np.uint8), mode="L").save(root / "labels" / f"{names[0].format(i=i)}.png")
        photo = colourise(np.minimum(ids, len(PAL) - 1), PAL).astype(np.float32) / 255
        write_image(root / "images" / f"{names[1].format(i=i)}.png", photo)
        if inst is not None:
            Image.fromarray(inst[i].astype(np.uint16)).save(root / "instances" / f"{names[0].format(i=i)}.png")
    return root


def cfg(root: Path, **kw) -> LabelDataConfig:
    base = {"root": str(root), "layout": "folders", "load_size": 32, "crop_size": 32, "flip": False}
    return LabelDataConfig(**{**base, **kw})


def test_facades_palette_is_what_the_real_label_maps_use(data_root: Path) -> None:
    train = data_root / "facades" / "train"
    if not train.is_dir():
        pytest.skip(reason=f"facades not found under {data_root} (IMG2IMG_DATA)")
    files = sorted(train.glob("*.jpg"))[:40]
    halves = [np.asarray(Image.open(p).convert("RGB"))[:, 256:] for p in files]
    found = derive_palette(halves, 12)
    pal = np.asarray(FACADES_PALETTE)
    match = [int(np.abs(pal - np.asarray(c)).max(axis=1).argmin()) for c in found]
    assert sorted(match) == list(range(12))  # one found colour per documented class, none left over
    assert all(np.abs(pal[m] - np.asarray(c)).max() <= 10 for m, c in zip(match, found, strict=True))
    assert len(FACADES_CLASSES) == 12 and FACADES_CLASSES[:3] == ["background", "facade", "window"]
    # Facade is the largest class and shop / door sit low in the picture, as the class names say.
    data = LabelDataset(LabelDataConfig(root=str(train), layout="aligned", palette="facades", load_size=256,
                                        crop_size=256, flip=False, max_dataset_size=30),
                        LabelDataConfig(root=str(train), layout="aligned", palette="facades").spec(12))  # fmt: skip
    ids = np.stack([data.sample(i, train=False)["label"].numpy() for i in range(len(data))])
    area = np.bincount(ids.ravel(), minlength=12)
    assert area.argmax() == FACADES_CLASSES.index("facade")
    rows = np.arange(256)[None, :, None]
    mean_row = [float((rows * (ids == k)).sum() / max((ids == k).sum(), 1)) for k in range(12)]
    assert mean_row[FACADES_CLASSES.index("shop")] > 150 and mean_row[FACADES_CLASSES.index("door")] > 150


def test_aligned_colour_label_maps_become_ids_by_nearest_colour(tmp_path: Path) -> None:
    ids = blocks(24, 24, [0, 3, 5])
    colour = colourise(ids, FACADES_PALETTE).astype(np.int16)
    noisy = np.clip(colour + np.random.default_rng(0).integers(-20, 21, colour.shape), 0, 255)  # JPEG-like noise
    photo = np.random.default_rng(1).random((24, 24, 3)).astype(np.float32)
    (tmp_path / "train").mkdir()
    write_image(tmp_path / "train" / "a.png", np.concatenate([photo, noisy / 255.0], axis=1).astype(np.float32))
    c = LabelDataConfig(root=str(tmp_path / "train"), layout="aligned", palette="facades", load_size=24,
                        crop_size=24, flip=False)  # fmt: skip
    label_nc, report = scan_label_nc(c, label_items(c))
    assert label_nc == 12 and "palette" in report
    s = LabelDataset(c, c.spec(label_nc))[0]
    assert np.array_equal(s["label"].numpy(), ids)
    assert s["image"].shape == (3, 24, 24) and float(s["image"].min()) >= -1 and float(s["image"].max()) <= 1


def test_label_nc_is_scanned_with_a_report_and_bad_ids_are_named(tmp_path: Path) -> None:
    root = id_folders(tmp_path / "d", [blocks(32, 32, [0, 2, 255]), blocks(32, 32, [1, 6])])
    c = cfg(root, dontcare=255)
    label_nc, report = scan_label_nc(c, label_items(c))
    assert label_nc == 7
    assert "scanned 2 label maps" in report and "0..6" in report and "255 is don't care" in report
    assert "3 never used" in report
    with pytest.raises(LabelError) as e:
        LabelDataset(c, cfg(root, dontcare=255, label_nc=5).spec(5))[1]
    msg = str(e.value)
    assert "1.png" in msg and "label id 6" in msg and "0..4" in msg and "255" in msg
    with pytest.raises(LabelError, match="label id 255"):
        LabelDataset(cfg(root, label_nc=7), cfg(root, label_nc=7).spec(7))[0]  # 255 without dontcare: an error


def test_nearest_resizing_keeps_the_id_set_and_photos_flip_with_their_labels(tmp_path: Path) -> None:
    ids = [blocks(50, 70, [0, 3, 7], seed=i) for i in range(4)]
    root = id_folders(tmp_path / "d", ids)
    c = cfg(root, label_nc=8, load_size=40, crop_size=32, flip=True)
    data = LabelDataset(c, c.spec(8), seed=3)
    seen_left = set()
    for epoch in range(3):
        data.set_epoch(epoch)
        for i in range(len(data)):
            s = data[i]
            got = s["label"].numpy()
            assert got.shape == (32, 32) and set(np.unique(got)) <= {0, 3, 7}  # nearest: no in-between ids
            # The photo is the label's colour, so away from stripe edges it must agree pixel for pixel.
            photo = ((s["image"].numpy().transpose(1, 2, 0) + 1) * 127.5).round()
            inner = np.zeros_like(got, dtype=bool)
            inner[:, 2:-2] = (got[:, 2:-2] == got[:, :-4]) & (got[:, 2:-2] == got[:, 4:])
            want = colourise(got, PAL).astype(np.float64)
            assert np.abs(photo[inner] - want[inner]).max() <= 40
            seen_left.add(int(got[0, 0]))  # 0 as stored, 7 when flipped
    assert seen_left == {0, 7}
    one = LabelDataset(cfg(root, label_nc=8, load_size=70, crop_size=48), cfg(root, label_nc=8).spec(8))
    assert set(np.unique(one.sample(0, train=False)["label"].numpy())) == {0, 3, 7}  # wide stripes all survive


def test_instance_maps_become_boundary_edges_and_scenes_match_by_name(tmp_path: Path) -> None:
    label = np.zeros((32, 32), np.uint8)
    label[:, 16:] = 1
    inst = np.zeros((32, 32), np.uint16)
    inst[:, 16:] = 26001  # Cityscapes-style 16-bit ids: class 26, instance 1
    inst[:, 24:] = 26002  # a second instance of the same class: only the instance map tells them apart
    names = ("aachen_{i}_gtFine_labelIds", "aachen_{i}_leftImg8bit")
    root = id_folders(tmp_path / "c", [label], inst=[inst], names=names)
    (root / "instances" / "aachen_0_gtFine_labelIds.png").rename(root / "instances" / "aachen_0_gtFine_instanceIds.png")
    c = cfg(root, label_nc=2, instance=True)
    [item] = label_items(c)
    assert item.key == "aachen_0" and item.image.name == "aachen_0_leftImg8bit.png"
    s = LabelDataset(c, c.spec(2))[0]
    edges = s["instance"].numpy()
    assert edges.shape == (32, 32) and set(np.unique(edges)) == {0.0, 1.0}
    assert edges[:, [15, 16, 23, 24]].all() and not edges[:, [0, 8, 20, 28, 31]].any()
    (root / "images" / "aachen_0_leftImg8bit.png").rename(root / "images" / "bonn_0_leftImg8bit.png")
    with pytest.raises(ConfigError, match="without"):
        label_items(c)


def test_config_errors_name_the_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.palette: unknown palette 'jet'"):
        LabelDataConfig(root="x", layout="aligned", palette="jet")
    with pytest.raises(ConfigError, match="instance"):
        LabelDataConfig(root="x", layout="aligned", instance=True, palette="facades")
    with pytest.raises(ConfigError, match="crop_size"):
        LabelDataConfig(root="x", load_size=100, crop_size=128)
    with pytest.raises(ConfigError, match="no labels folder"):
        label_items(cfg(tmp_path))


def test_real_coco_stuff_folders_with_dontcare_and_instances(data_root: Path) -> None:
    root = data_root / "coco_stuff_spade"
    if not root.is_dir():
        pytest.skip(reason=f"coco_stuff_spade not found under {data_root} (IMG2IMG_DATA)")
    c = LabelDataConfig(root=str(root), label_nc=182, dontcare=255, instance=True, load_size=64, crop_size=64)
    data = LabelDataset(c, c.spec(182))
    assert len(data) == 13 and c.spec(182).semantic_nc == 184
    s = data[0]
    ids = s["label"].numpy()
    assert ids.shape == (64, 64) and set(np.unique(ids)) <= set(range(182)) | {255}
    assert s["instance"].shape == (64, 64) and 0 < float(s["instance"].mean()) < 0.5


def test_real_cityscapes_scenes_with_label_ids_and_16_bit_instance_ids(data_root: Path) -> None:
    """The pix2pixHD/SPADE Cityscapes layout: `train_label/*_gtFine_labelIds.png` (35 classes),
    `train_inst/*_gtFine_instanceIds.png` (16-bit ids: class * 1000 + instance) and `train_img/*_leftImg8bit.png`,
    matched by scene; resized 2:1 as the released config does."""
    root = data_root / "cityscapes_samples"
    if not root.is_dir():
        pytest.skip(reason=f"cityscapes_samples not found under {data_root} (IMG2IMG_DATA)")
    c = LabelDataConfig(root=str(root), label_nc=35, instance=True, preprocess="fixed", load_size=128, crop_size=128,
                        aspect_ratio=2.0, label_dir=str(root / "train_label"), image_dir=str(root / "train_img"),
                        instance_dir=str(root / "train_inst"))  # fmt: skip
    spec = c.spec(35)
    data = LabelDataset(c, spec)
    assert len(data) == 8 and spec.semantic_nc == 36  # 35 classes + the instance-boundary channel
    s = data[0]
    ids, edges, photo = s["label"].numpy(), s["instance"].numpy(), s["image"]
    assert ids.shape == edges.shape == (64, 128) and photo.shape == (3, 64, 128)
    assert set(np.unique(ids)) <= set(range(35)) and len(np.unique(ids)) > 5  # a street scene has many classes
    raw = np.asarray(Image.open(sorted((root / "train_inst").iterdir())[0]))
    assert raw.dtype != np.uint8 and raw.max() > 1000  # cars and people carry class * 1000 + k
    assert 0 < float(edges.mean()) < 0.3 and set(np.unique(edges)) <= {0.0, 1.0}
