"""What users read: refusals of pickled code never advise turning the protection off (weights_only=False)
and name the safe route instead; a float32 TIFF is called unsupported, not invalid; the output limit
names a setting a CLI user can change; OS errors in the per-file table read as sentences."""

from __future__ import annotations

import collections
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from img2img.cli import main
from img2img.errors import ImageError, ImageTooLargeError, Img2ImgError, WeightsError


class Planted:
    """Unpickling an instance imports and calls this module's code: what an attacker's class would do."""

    def __reduce__(self):
        return (collections.namedtuple, ("Ran", "code"))


def _planted(path: Path) -> Path:
    """A checkpoint whose pickle calls a function on load (refused by the weights-only unpickler)."""
    torch.save({"params": Planted(), "w": torch.zeros(2)}, path)
    return path


def _no_bad_advice(text: str) -> None:
    assert "weights_only=False" not in text.replace(" ", "") and "weights_only` set to `False" not in text
    assert "refused" in text and "could run code" in text


def test_convert_refuses_a_pickle_and_names_the_safe_route(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = _planted(tmp_path / "evil.pth")
    assert main(["convert", str(src), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    _no_bad_advice(err)
    assert ".safetensors" in err and "img2img convert" in err


def test_training_state_refusal(tmp_path: Path) -> None:
    from img2img.train.checkpoint import load_state

    with pytest.raises(WeightsError) as e:
        load_state(_planted(tmp_path / "step_00000001.pt"))
    _no_bad_advice(str(e.value))
    assert "img2img export" in str(e.value)


def test_vgg_and_inception_refusals(tmp_path: Path) -> None:
    from img2img.eval.inception import load_fid_inception
    from img2img.losses import load_vgg19_state_dict

    with pytest.raises(WeightsError) as e:
        load_vgg19_state_dict(_planted(tmp_path / "vgg19.pth"))
    _no_bad_advice(str(e.value))
    assert ".safetensors" in str(e.value)
    with pytest.raises(WeightsError) as e:
        load_fid_inception(_planted(tmp_path / "inception.pth"), sha256=None)
    _no_bad_advice(str(e.value))


def test_a_damaged_checkpoint_gives_one_line(tmp_path: Path) -> None:
    from img2img.train.checkpoint import load_state

    bad = tmp_path / "x.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(
        WeightsError, match=r"cannot read this training state, damaged or not a PyTorch file \(\w+"
    ) as e:
        load_state(bad)
    assert "weights_only" not in str(e.value)
    garbage = tmp_path / "g.pth"
    garbage.write_bytes(b"not a checkpoint")  # torch wraps this in its weights_only advice: none of it is quoted
    with pytest.raises(WeightsError, match="damaged or not a PyTorch file .*Unsupported operand") as e:
        load_state(garbage)
    assert "weights_only" not in str(e.value) and "refused" not in str(e.value)


@pytest.mark.parametrize("grey", [False, True])
def test_a_float32_tiff_is_unsupported_not_invalid(tmp_path: Path, grey: bool) -> None:
    from img2img.io.images import read_image

    path = tmp_path / "f.tif"
    if grey:
        Image.fromarray(np.random.rand(8, 8).astype(np.float32), mode="F").save(path)
    else:
        assert cv2.imwrite(str(path), np.random.rand(8, 8, 3).astype(np.float32))
    with pytest.raises(ImageError, match="unsupported: float32 TIFF") as e:
        read_image(path)
    assert "not a valid" not in str(e.value)


def test_the_output_limit_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import img2img

    monkeypatch.setenv("IMG2IMG_MAX_OUTPUT_PIXELS", "1000")
    model = img2img.load("esrgan-small-x4", device="cpu")
    assert model.max_output_pixels == 1000
    with pytest.raises(ImageTooLargeError, match="IMG2IMG_MAX_OUTPUT_PIXELS=N"):
        model(np.zeros((16, 16, 3), np.float32))
    monkeypatch.setenv("IMG2IMG_MAX_OUTPUT_PIXELS", "5000")
    assert img2img.load("esrgan-small-x4", device="cpu")(np.zeros((16, 16, 3), np.float32)).shape == (64, 64, 3)
    monkeypatch.setenv("IMG2IMG_MAX_OUTPUT_PIXELS", "lots")
    with pytest.raises(Img2ImgError, match="not a number of pixels"):
        img2img.load("esrgan-small-x4", device="cpu")


def test_the_cli_output_limit_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setenv("IMG2IMG_MAX_OUTPUT_PIXELS", "1000")
    code = main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "out"), "--model", "esrgan-small-x4", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "IMG2IMG_MAX_OUTPUT_PIXELS" in err and "max_output_pixels=..." not in err


def test_os_errors_in_the_failure_table_read_as_sentences(tmp_path: Path) -> None:
    from img2img.infer.batch import BatchOptions, report_lines, run_batch

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")

    def denied(img):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / "a.png"))

    opts = BatchOptions(inputs=[tmp_path / "a.png"], output=tmp_path / "out")
    report = run_batch(opts, denied, progress=False)
    ((_, reason),) = report.failed
    assert "Errno" not in reason and "PermissionError" not in reason
    assert reason.startswith("permission denied for ") and "check its permissions" in reason
    assert any("permission denied" in line for line in report_lines(report))
