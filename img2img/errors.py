"""Typed errors. Every user-facing failure raises one of these with a message that says what to do."""


class Img2ImgError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ImageError(Img2ImgError):
    """An image could not be read or written (corrupt, truncated, unsupported, too large)."""


class ImageTooLargeError(ImageError):
    """Decoding (or producing) the image would exceed the configured pixel limit."""


class WeightsError(Img2ImgError):
    """A weights file is missing, unsafe, or does not match any known architecture."""


class ConfigError(Img2ImgError):
    """A config file or override is invalid."""


class LabelError(ImageError):
    """A label or instance map is unreadable, or holds ids the model does not know."""


class TextError(Img2ImgError):
    """A prompt, caption, vocabulary or text-embedding file cannot be used by the model."""


class OutputExistsError(Img2ImgError):
    """An output file already exists and the user did not ask to replace it."""


def load_refusal(path: object, what: str, e: BaseException, safe_route: str) -> str:
    """The message for a `torch.load(weights_only=True)` that failed: a refusal (the file holds pickled code
    or non-tensor objects) names the risk and `safe_route`, the safe way to use such a file; other failures
    give their first line. Never torch's own hint, which advises turning the protection off."""
    text = str(e).strip()
    if "weights only load failed" in text.lower() or "weights_only" in text:
        return (
            f"{path}: refused to load {what}: it holds pickled code or objects other than tensors (loading "
            f"those could run code), so it was not loaded. {safe_route}"
        )
    first = text.splitlines()[0][:200] if text else ""
    return f"{path}: cannot read {what} ({type(e).__name__}{': ' + first if first else ''})"
