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


def unpickler_reason(text: str) -> str:
    """The weights-only unpickler's own reason inside torch's message (without torch's advice), or ""."""
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()] if found else []
    return lines[0].split(". Please use")[0][:200] if lines else ""


def is_code_refusal(e: BaseException) -> bool:
    """Whether a `torch.load(weights_only=True)` failed because the file asks to run code or build objects
    beyond tensors (rather than being damaged)."""
    reason = unpickler_reason(str(e)).lower()
    return "global" in reason or "class" in reason


def load_refusal(path: object, what: str, e: BaseException, safe_route: str) -> str:
    """The message for a `torch.load(weights_only=True)` that failed: a refusal (the file holds pickled code
    or non-tensor objects) names the risk and `safe_route`, the safe way to use such a file; other failures
    (damaged files) give the reason. Never torch's own hint, which advises turning the protection off."""
    if is_code_refusal(e):
        return (
            f"{path}: refused to load {what}: it holds pickled code or objects other than tensors (loading "
            f"those could run code), so it was not loaded. {safe_route}"
        )
    text = str(e).strip()
    reason = unpickler_reason(text) or (text.splitlines()[0][:200] if text else "")
    return f"{path}: cannot read {what}, damaged or not a PyTorch file ({type(e).__name__}: {reason or 'no detail'})"
