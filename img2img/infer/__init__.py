"""The inference engine: `load(name_or_path) -> Model` (`model`), tiling (`tiling`), and the batch
runner shared by every batch command (`batch`, `jobs`). Imports no training code."""

from __future__ import annotations

__all__ = ["Model", "load"]


def __getattr__(name: str):
    # Lazy, so `import img2img.infer.batch` does not pull in torch.
    if name in __all__:
        from img2img.infer import model

        return getattr(model, name)
    raise AttributeError(f"module 'img2img.infer' has no attribute {name!r}")
