"""`--precision auto` on the CPU: bf16 only where the CPU computes it natively and the card records a
measured bf16 fidelity of at least 45 dB against fp32; fp32 everywhere else. Commands and the app say
which precision ran."""

from __future__ import annotations

import torch

from img2img.archs import SRVGGNetCompact
from img2img.cli import main
from img2img.devices import cpu_flags, native_bf16
from img2img.infer.model import load, resolve_precision
from img2img.resources import bundled_weights_dir
from img2img.weights.format import Card, read_card, save_weights
from img2img.weights.probe import BF16_MIN_PSNR, bf16_ok, record_precision

CPU = torch.device("cpu")


def card_with(psnr: float | None) -> Card:
    extra = {} if psnr is None else {"precision": {"bf16_psnr_db": psnr, "probe": "test"}}
    return Card(name="m", arch="SRVGGNetCompact", arch_kwargs={}, task="upscale", scale=4, extra=extra)


def test_auto_picks_bf16_only_on_native_cpus_for_faithful_models(monkeypatch) -> None:
    monkeypatch.setenv("IMG2IMG_NATIVE_BF16", "1")
    assert resolve_precision("auto", CPU, card_with(52.0)) == "bf16"
    assert resolve_precision("auto", CPU, card_with(BF16_MIN_PSNR - 0.1)) == "fp32"  # visible change: no
    assert resolve_precision("auto", CPU, card_with(None)) == "fp32"  # never measured: no
    assert resolve_precision("fp32", CPU, card_with(52.0)) == "fp32"  # asked for explicitly
    monkeypatch.setenv("IMG2IMG_NATIVE_BF16", "0")  # emulated bf16 is several times slower than fp32
    assert resolve_precision("auto", CPU, card_with(52.0)) == "fp32"
    assert resolve_precision("bf16", CPU, card_with(None)) == "bf16"


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch) -> None:
    monkeypatch.delenv("IMG2IMG_NATIVE_BF16", raising=False)
    assert native_bf16() == bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def test_fidelity_is_measured_and_recorded(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    kwargs = {"nf": 8, "num_conv": 2, "scale": 4}
    card = Card(name="tiny", arch="SRVGGNetCompact", arch_kwargs=kwargs, task="upscale", scale=4)
    sd = SRVGGNetCompact(**kwargs).state_dict()
    monkeypatch.setenv("IMG2IMG_NATIVE_BF16", "0")
    assert "precision" not in record_precision(sd, card).extra  # emulated: not measured (auto stays fp32)
    measured = record_precision(sd, card, force=True)
    value = measured.extra["precision"]["bf16_psnr_db"]
    assert 30 < value < 99 and bf16_ok(measured) == (value >= BF16_MIN_PSNR)
    path = save_weights(tmp_path / "tiny.safetensors", sd, measured)
    monkeypatch.setenv("IMG2IMG_NATIVE_BF16", "1")
    model = load(path, device="cpu")
    assert model.precision == ("bf16" if value >= BF16_MIN_PSNR else "fp32")


def test_every_bundled_image_model_records_its_bf16_fidelity() -> None:
    for path in sorted(bundled_weights_dir().glob("*.safetensors")):
        card = read_card(path)
        if card.kind == "image":
            assert bf16_ok(card), f"{path.name}: {card.extra.get('precision')}"


def test_the_batch_command_says_which_precision_ran(tmp_path, capsys, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.setenv("IMG2IMG_NATIVE_BF16", "0")
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "out"), "--model", "esrgan-small-x4"]) == 0
    assert "esrgan-small-x4 on cpu, fp32 (auto)" in capsys.readouterr().err
