"""Fine-tuning plans: how a recipe turns exported or released weights plus a user's data folder into a
run config (`img2img finetune --weights W --data DIR`). Each recipe's `finetune` classmethod uses these;
the data layout is checked against the task, with an error that says which layouts fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from img2img.errors import ConfigError
from img2img.io.files import image_files, subfolder


def has_images(folder: Path) -> bool:
    return folder.is_dir() and bool(image_files(folder))


def generator_spec(card: Any) -> dict[str, Any]:
    """The model section of a generator from its card: `{arch: ..., **arch_kwargs}`."""
    return {"arch": card.arch, **card.arch_kwargs}


def sr_data(data: Path, lr: Path | None) -> tuple[Path, Path | None]:
    """(HR folder, LR folder or None) for super-resolution: DIR of HR images, DIR/hr + DIR/lr, or --lr."""
    if not data.is_dir():
        raise ConfigError(f"--data {data}: not a folder")
    if lr is not None:
        if not lr.is_dir():
            raise ConfigError(f"--lr {lr}: not a folder")
        return data, lr
    hr_sub, lr_sub = subfolder(data, "hr"), subfolder(data, "lr")
    if hr_sub and lr_sub:
        return hr_sub, lr_sub
    if not has_images(data):
        raise ConfigError(f"--data {data}: no images; give a folder of HR images, or one with hr/ and lr/")
    return data, None


def paired_data(data: Path) -> dict[str, Any]:
    """The data section for paired translation: A/ + B/ folders matched by name, or side-by-side A|B
    images in DIR or DIR/train."""
    if not data.is_dir():
        raise ConfigError(f"--data {data}: not a folder")
    a, b = subfolder(data, "A"), subfolder(data, "B")
    if a and b:
        return {"layout": "folders", "root": "", "dir_A": str(a), "dir_B": str(b)}
    for root in (data, subfolder(data, "train")):
        if root is not None and has_images(root):
            return {"layout": "aligned", "root": str(root), "dir_A": None, "dir_B": None}
    unpaired = subfolder(data, "trainA") and subfolder(data, "trainB")
    hint = " (trainA/ + trainB/ is the unpaired layout of CycleGAN, not pairs)" if unpaired else ""
    raise ConfigError(
        f"--data {data}: a paired translation model needs side-by-side A|B images (in DIR or DIR/train) or "
        f"A/ and B/ folders matched by file name{hint}"
    )


def unpaired_data(data: Path) -> dict[str, Any]:
    """The data section for unpaired translation: trainA/ + trainB/, or A/ + B/."""
    if not data.is_dir():
        raise ConfigError(f"--data {data}: not a folder")
    for a_name, b_name in (("trainA", "trainB"), ("A", "B")):
        a, b = subfolder(data, a_name), subfolder(data, b_name)
        if a and b and has_images(a) and has_images(b):
            return {"root": "", "dir_A": str(a), "dir_B": str(b)}
    raise ConfigError(
        f"--data {data}: an unpaired (CycleGAN) model needs two folders of images, trainA/ + trainB/ or A/ + B/"
    )


def label_data(data: Path) -> dict[str, Any]:
    """The data section for label map -> photo (SPADE): labels/ + images/ (+ instances/) (or the NVlabs
    train_label/ + train_img/ (+ train_inst/)) matched by scene name, or side-by-side photo|colour-label
    images in DIR or DIR/train."""
    from img2img.data.labels import ROLE_DIRS

    if not data.is_dir():
        raise ConfigError(f"--data {data}: not a folder")
    found = {role: next((f for n in names if (f := subfolder(data, n))), None) for role, names in ROLE_DIRS.items()}
    if found["labels"] and found["images"]:
        return {
            "layout": "folders",
            "root": str(data),
            "label_dir": str(found["labels"]),
            "image_dir": str(found["images"]),
            "instance_dir": str(found["instances"]) if found["instances"] else None,
        }
    for root in (data, subfolder(data, "train")):
        if root is not None and has_images(root):
            return {"layout": "aligned", "root": str(root), "label_dir": None, "image_dir": None, "instance_dir": None}
    raise ConfigError(
        f"--data {data}: a label map -> photo model needs labels/ + images/ folders (+ instances/) matched by "
        "name, or side-by-side photo|colour-label images (in DIR or DIR/train)"
    )
