"""Label maps are read as ids, never as colours: grey 8/16-bit and palette PNGs, colour maps through a
palette (nearest colour), bad ids named with the file and range; the SPADE network input from them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from img2img.errors import LabelError
from img2img.io.labels import (
    LabelSpec,
    colourise,
    instance_edges,
    map_colours,
    read_instance_map,
    read_label_map,
    semantic_input,
)

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def ids_map() -> np.ndarray:
    ids = np.zeros((6, 8), np.int32)
    ids[:, 4:] = 1
    ids[3:, :2] = 3
    return ids


def test_grey_8_and_16_bit_and_palette_pngs_read_as_ids(tmp_path) -> None:
    ids = ids_map()
    assert (read_label_map(png(Image.fromarray(ids.astype(np.uint8)))) == ids).all()
    big = ids.astype(np.uint16) * 1000  # 16-bit ids (Cityscapes instanceIds-style values)
    p16 = tmp_path / "inst.png"
    Image.fromarray(big).save(p16)
    assert (read_label_map(p16) == big).all() and (read_instance_map(p16) == big).all()
    pal = Image.fromarray(ids.astype(np.uint8), mode="P")
    pal.putpalette([c for rgb in reversed(PALETTE) for c in rgb])  # palette colours differ from the ids' order
    assert (read_label_map(png(pal)) == ids).all()  # indices, not colours


def test_colour_maps_snap_to_the_nearest_palette_colour() -> None:
    ids = ids_map()
    rgb = colourise(ids, PALETTE).astype(np.int16)
    noisy = np.clip(rgb + np.random.default_rng(0).integers(-40, 40, rgb.shape), 0, 255).astype(np.uint8)
    spec = LabelSpec(label_nc=4, palette=PALETTE)
    assert (read_label_map(png(Image.fromarray(noisy)), spec) == ids).all()
    assert (map_colours(np.array([[[200, 30, 30], [10, 10, 240]]], np.uint8), PALETTE) == [[1, 3]]).all()
    with pytest.raises(LabelError, match="no palette"):
        read_label_map(png(Image.fromarray(noisy)), LabelSpec(label_nc=4))


def test_ids_outside_the_model_range_name_the_file_id_and_range(tmp_path) -> None:
    ids = ids_map()
    ids[0, 0] = 7
    path = tmp_path / "bad.png"
    Image.fromarray(ids.astype(np.uint8)).save(path)
    with pytest.raises(LabelError, match=r"bad\.png: label id 7 is outside the model's classes 0\.\.3"):
        read_label_map(path, LabelSpec(label_nc=4))
    ids[0, 0] = 255
    Image.fromarray(ids.astype(np.uint8)).save(path)
    assert read_label_map(path, LabelSpec(label_nc=4, dontcare=255))[0, 0] == 255


@pytest.mark.parametrize("data", [b"", b"not an image", png(Image.new("RGB", (4, 4)))[:40]])
def test_unreadable_label_files_are_label_errors(data: bytes) -> None:
    with pytest.raises(LabelError):
        read_label_map(data, LabelSpec(label_nc=4, palette=PALETTE))


def test_semantic_input_one_hot_dontcare_and_instance_edges() -> None:
    ids = ids_map()
    ids[0, 0] = 255
    inst = np.zeros_like(ids)
    inst[:, 6:] = 5  # two instances of class 1 side by side
    spec = LabelSpec(label_nc=4, dontcare=255, instance=True)
    x = semantic_input(ids, spec, inst)
    assert x.shape == (6, 6, 8) and spec.semantic_nc == 6
    assert (x[:5].sum(axis=0) == 1).all()  # exactly one class (or don't care) per pixel
    assert x[4, 0, 0] == 1 and x[1, 0, 5] == 1 and x[3, 4, 0] == 1
    edges = x[5]
    assert (edges[:, 5:7] == 1).all() and edges[:, :5].sum() == 0 and (edges == instance_edges(inst)).all()
    with pytest.raises(LabelError, match="instance map"):
        semantic_input(ids, spec)
    with pytest.raises(LabelError, match="same size"):
        semantic_input(ids, spec, inst[:, :4])


def test_spec_round_trips_and_checks_itself() -> None:
    spec = LabelSpec(label_nc=4, palette=PALETTE, classes=["a", "b", "c", "d"], dontcare=255)
    assert LabelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(LabelError, match="one RGB colour per class"):
        LabelSpec(label_nc=3, palette=PALETTE)
    with pytest.raises(LabelError):
        LabelSpec(label_nc=0)


def test_painted_strokes_snap_to_the_painted_classes_only() -> None:
    from img2img.io.labels import snap_painting, starting_canvas

    palette = [(0, 0, 0), (255, 0, 0), (0, 0, 255), (127, 0, 127)]  # class 3 is the red/blue blend
    ids = np.zeros((20, 20), np.int64)
    ids[:, 10:] = 2
    ids[5:15, 2:8] = 1
    rgb = colourise(ids, palette)
    rgb[:, 9] = (128, 0, 128)  # anti-aliased edge between red-ish and blue: nearest colour is class 3
    got = snap_painting(rgb, palette)
    assert set(np.unique(got)) == {0, 1, 2}  # no phantom class 3
    assert (got[ids != 0] == ids[ids != 0])[(np.arange(400).reshape(20, 20) % 20 != 9)[ids != 0]].all()
    canvas = starting_canvas(LabelSpec(label_nc=3), 10, 4)
    assert (canvas[:6] == 0).all() and (canvas[6:] == 1).all()
    assert (starting_canvas(LabelSpec(label_nc=3, canvas=[[2, 0.5], [0, 0.5]]), 4, 2)[:2] == 2).all()
