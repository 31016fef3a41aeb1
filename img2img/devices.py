"""Which process this is and which device it uses, for inference and training alike: the `torchrun`
environment (RANK, WORLD_SIZE, LOCAL_RANK) and one device resolution (`auto`, `cpu`, `cuda`, `cuda:N`,
`mps`), where a launched rank takes its own GPU. Light: torch is imported only to resolve a device."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from img2img.errors import ConfigError

if TYPE_CHECKING:
    import torch


def launcher_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the `torchrun` environment; (0, 1, 0) when not launched."""
    env = os.environ
    try:
        rank = int(env.get("RANK", env.get("LOCAL_RANK", "0")))
        world = int(env.get("WORLD_SIZE", env.get("LOCAL_WORLD_SIZE", "1")))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"bad RANK/WORLD_SIZE/LOCAL_RANK in the environment: {e}") from e
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"inconsistent launcher environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def resolve_device(
    spec: str | torch.device = "auto", *, local_rank: int = 0, allow_mps: bool = True, key: str = "device"
) -> torch.device:
    """`auto` (this rank's GPU, then Apple MPS if allowed, then CPU), `cpu`, `cuda` (this rank's GPU),
    `cuda:N` or `mps`; a device that is not there is a ConfigError naming `key`."""
    import torch

    s = str(spec).strip().lower()
    mps_ok = allow_mps and hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if s == "auto":
        s = "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if s == "cpu":
        return torch.device("cpu")
    if s == "mps":
        if not mps_ok:
            raise ConfigError(f"{key} 'mps' requested but Apple MPS is not available here; use cpu")
        return torch.device("mps")
    if s == "cuda" or s.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key} {str(spec)!r} requested but CUDA is not available (no GPU, or torch "
                f"{torch.__version__} was built without CUDA support); use cpu"
            )
        index = s.partition(":")[2] or str(local_rank)
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(f"no CUDA device {str(spec)!r}: {torch.cuda.device_count()} visible (cuda:0 ...)")
        return torch.device(f"cuda:{index}")
    allowed = "auto, cpu, cuda, cuda:N" + (" or mps" if allow_mps else "")
    raise ConfigError(f"unknown {key} {str(spec)!r}: use {allowed}")


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags of native bf16 dot products (x86)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Without it torch emulates bf16, which
    runs several times slower than fp32. `IMG2IMG_NATIVE_BF16=0|1` overrides the detection."""
    forced = os.environ.get("IMG2IMG_NATIVE_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return bool(set(BF16_FLAGS) & cpu_flags())
