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
