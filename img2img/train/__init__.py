"""The training engine: `Trainer(cfg).fit()` runs any recipe (see `img2img.recipes`)."""

from __future__ import annotations

from img2img.train.engine import NonFiniteLossError, Trainer, TrainResult

__all__ = ["NonFiniteLossError", "Trainer", "TrainResult"]
