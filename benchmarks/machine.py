"""What a benchmark result depends on: CPU model, the vector and bf16 instruction sets it has, and
oneDNN's view of bf16. bf16 is ~2x faster than fp32 on CPUs with native bf16 dot products
(AVX512-BF16, AMX) and many times slower on those without, so results record which one ran."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def describe() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {
        "machine": platform.platform(),
        "cpu": model,
        "cores": os.cpu_count(),
        "cpu_flags": [f for f in FLAGS if f in flags],
        "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def headline(info: dict) -> str:
    bf16 = "native bf16" if info["native_bf16"] else "no native bf16"
    return f"{info['cpu']} ({', '.join(info['cpu_flags']) or 'no AVX2'}; {bf16}), {info['threads']} threads"
