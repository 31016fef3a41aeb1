"""Architecture registry: name -> nn.Module class built from plain keyword arguments."""

from __future__ import annotations

from torch import nn

from img2img.archs.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from img2img.archs.patchgan import PatchDiscriminator, PixelDiscriminator
from img2img.archs.resnet import ResnetGenerator
from img2img.archs.rrdbnet import RRDBNet
from img2img.archs.spade import ConvEncoder, MultiscaleDiscriminator, SPADEGenerator
from img2img.archs.srvgg import SRVGGNetCompact
from img2img.archs.stackgan import StageIDiscriminator, StageIGenerator, StageIIDiscriminator, StageIIGenerator
from img2img.archs.text_encoder import ImageEncoder, SentenceEncoder
from img2img.archs.unet import UNetGenerator

ARCHS: dict[str, type[nn.Module]] = {
    "RRDBNet": RRDBNet,
    "SRVGGNetCompact": SRVGGNetCompact,
    "VGGStyleDiscriminator": VGGStyleDiscriminator,
    "UNetDiscriminatorSN": UNetDiscriminatorSN,
    "UNetGenerator": UNetGenerator,
    "ResnetGenerator": ResnetGenerator,
    "PatchDiscriminator": PatchDiscriminator,
    "PixelDiscriminator": PixelDiscriminator,
    "StageIGenerator": StageIGenerator,
    "StageIDiscriminator": StageIDiscriminator,
    "StageIIGenerator": StageIIGenerator,
    "StageIIDiscriminator": StageIIDiscriminator,
    "SentenceEncoder": SentenceEncoder,
    "ImageEncoder": ImageEncoder,
    "SPADEGenerator": SPADEGenerator,
    "ConvEncoder": ConvEncoder,
    "MultiscaleDiscriminator": MultiscaleDiscriminator,
}


def build_arch(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered architecture; unknown names list the known ones."""
    from img2img.errors import WeightsError

    if name not in ARCHS:
        raise WeightsError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}")
    try:
        return ARCHS[name](**kwargs)
    except TypeError as e:
        raise WeightsError(f"bad arguments for {name}: {e}") from e
