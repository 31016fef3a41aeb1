"""Exponential moving average of network weights (shadow = d * shadow + (1 - d) * weights), updated
after each optimizer step of the phase that trains the network. The shadow copies are what sample
grids, validation and export use, as BasicSR's `params_ema`. With warm-up, d = min(decay,
(1 + n) / (10 + n)) after n updates, so a short run's average is not dominated by its start."""

from __future__ import annotations

import copy

import torch
from torch import nn

from img2img.errors import ConfigError


class EMA:
    """Shadow copies of chosen networks (kept on the same device, in eval mode, without grads)."""

    def __init__(self, nets: dict[str, nn.Module], names: list[str], decay: float, warmup: bool = False) -> None:
        unknown = [n for n in names if n not in nets]
        if unknown:
            raise ConfigError(f"train.ema.networks: {unknown} not among this recipe's networks {sorted(nets)}")
        self.decay = decay
        self.warmup = warmup
        self.shadow: dict[str, nn.Module] = {}
        self.updates: dict[str, int] = {}
        for name in names:
            self.shadow[name] = copy.deepcopy(nets[name]).eval().requires_grad_(False)
            self.updates[name] = 0

    def __contains__(self, name: str) -> bool:
        return name in self.shadow

    @torch.no_grad()
    def update(self, name: str, net: nn.Module) -> None:
        if name not in self.shadow:
            return
        ema = self.shadow[name]
        n = self.updates[name]
        decay = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        self.updates[name] = n + 1
        ema_p = list(ema.parameters())
        src_p = [p.detach() for p in net.parameters()]
        if ema_p:
            torch._foreach_lerp_(ema_p, src_p, 1.0 - decay)
        # Buffers (BatchNorm statistics) are copied, not averaged, as BasicSR does.
        for b_ema, b in zip(ema.buffers(), net.buffers(), strict=True):
            b_ema.copy_(b)

    def networks(self, nets: dict[str, nn.Module]) -> dict[str, nn.Module]:
        """`nets` with the EMA copies substituted where present."""
        return {k: self.shadow.get(k, v) for k, v in nets.items()}

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {k: v.state_dict() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]], updates: dict[str, int]) -> None:
        for name, sd in state.items():
            if name in self.shadow:
                self.shadow[name].load_state_dict(sd)
                self.updates[name] = int(updates.get(name, 0))

    def reset_from(self, nets: dict[str, nn.Module]) -> None:
        """Restart the averages from the current weights (after init_from)."""
        with torch.no_grad():
            for name, ema in self.shadow.items():
                ema.load_state_dict(nets[name].state_dict())
