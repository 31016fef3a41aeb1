"""img2img: image-to-image translation and super-resolution.

Public API (imports no training code): `load(name_or_path) -> Model`, `list_weights()`.
Images in the public API are float32 in [0, 1], HWC numpy or NCHW tensors.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "list_weights", "Model", "__version__"]


def __getattr__(name: str):
    # Lazy: `import img2img` stays cheap (no torch import) until the API is used.
    if name in ("load", "Model"):
        from img2img.infer import model as infer

        return getattr(infer, name)
    if name == "list_weights":
        from img2img.weights import catalog

        return catalog.list_weights
    raise AttributeError(f"module 'img2img' has no attribute {name!r}")
