"""How faithfully a model runs in bf16: PSNR of its bf16-autocast output against its fp32 output on a fixed
probe image, measured on the CPU when weights are converted or exported and recorded in the card
(`extra.precision`). `--precision auto` picks bf16 on a CPU with native bf16 only for a model whose record
reaches BF16_MIN_PSNR; a model without the record stays fp32."""

from __future__ import annotations

import math

import torch

from img2img.weights.format import Card, build_network, split_bundle

BF16_MIN_PSNR = 45.0  # dB: below this a bf16 result may differ visibly from fp32
PROBE_SIDE = 48
PROBE = f"{PROBE_SIDE}x{PROBE_SIDE} smooth random image (seed 0), fp32 vs bf16 autocast on the CPU"


def probe_image(channels: int, side: int = PROBE_SIDE) -> torch.Tensor:
    """1 x C x side x side in [0, 1]: bilinear-upsampled noise (smooth areas and edges), fixed seed."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, channels, side // 6 + 1, side // 6 + 1, generator=g)
    fine = torch.rand(1, channels, side, side, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    return (0.85 * x + 0.15 * fine).clamp(0, 1)


def bf16_psnr(net: torch.nn.Module, card: Card) -> float:
    """PSNR (dB, outputs mapped to [0, 1]) of `net` under bf16 autocast against fp32 on the probe."""
    lo, hi = (float(v) for v in card.value_range)
    m = max(1, int(card.size_multiple), int(getattr(net, "size_multiple", 1)))
    side = m * math.ceil(PROBE_SIDE / m)
    x = probe_image(int(card.in_channels), side) * (hi - lo) + lo
    net = net.eval()
    with torch.inference_mode():
        ref = ((net(x).float() - lo) / (hi - lo)).clamp(0, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = ((net(x).float() - lo) / (hi - lo)).clamp(0, 1)
    mse = float(((ref - low) ** 2).mean())
    return 99.0 if mse <= 1e-10 else 10 * math.log10(1 / mse)


def record_precision(sd: dict[str, torch.Tensor], card: Card, *, force: bool = False) -> Card:
    """`card` with `extra.precision` = {bf16_psnr_db, probe} for an image -> image model. Measured where
    the CPU has native bf16 (or with `force`): where bf16 is emulated the probe takes long and `auto`
    never picks bf16 anyway. Other kinds are returned unchanged (they stay fp32 under `auto`)."""
    from img2img.devices import native_bf16

    if card.kind != "image" or not (force or native_bf16()):
        return card
    net = build_network(card, split_bundle(card, sd)[""])
    value = round(bf16_psnr(net, card), 2)
    card.extra = {**card.extra, "precision": {"bf16_psnr_db": value, "probe": PROBE}}
    return card


def bf16_ok(card: Card) -> bool:
    """Whether the card's measured bf16 fidelity allows bf16 under `--precision auto`."""
    record = card.extra.get("precision") if isinstance(card.extra, dict) else None
    value = record.get("bf16_psnr_db") if isinstance(record, dict) else None
    return isinstance(value, int | float) and math.isfinite(value) and value >= BF16_MIN_PSNR
