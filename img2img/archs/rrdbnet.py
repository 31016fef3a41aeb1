"""RRDBNet, the ESRGAN generator (Wang et al. 2018, "ESRGAN", Fig. 4).

Parameter names follow BasicSR >= 1.0 (`conv_first`, `body.i.rdbj.convk`, `conv_body`, `conv_up1`, ...)
so that Real-ESRGAN / BasicSR files load directly. Scales 1 and 2 pixel-unshuffle the input (as
Real-ESRGAN's x1/x2 models do) and keep a x4 body.

In inference on a large input the upsampling tail (64 channels at 2x, 4x (and 8x) the body's size:
the largest tensors of the network, 16x the body's features at x4) runs in row strips with two rows
of context each, so its memory stays near TAIL_STRIP_BYTES whatever the tile size (a tail of up to
TAIL_WHOLE_BYTES runs whole: strips cost ~25% more tail work; when the tiler sizes tiles for a small
peak, only one whose whole peak fits the tile's budget, `limit_tail_memory`); the result is the whole-tail result
(same arithmetic on the same inputs). Training, tracing, export and torch.compile
run the tail whole.

On the CPU in fp32 inference, a wide body's dense blocks run by Winograd F(4x4, 3x3) (`winograd`:
1.05-1.47x faster for 64 features / growth 32, the Real-ESRGAN models); `RRDBNet.winograd = False`
turns it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from img2img.archs import winograd as wino

TAIL_WHOLE_BYTES = 64 << 20  # an inference tail whose widest tensor is larger runs in strips ...
TAIL_STRIP_BYTES = 8 << 20  # ... of about this size
TAIL_MIN_ROWS = 8  # body rows per strip at least (each strip recomputes 2 x TAIL_HALO rows)
TAIL_HALO = 2  # body rows of context above and below a strip: the tail's convs reach 1.25 rows
TAIL_LIVE = 3.5  # a whole tail's peak memory over its widest tensor (measured 3.4 for nf 32 at x4)


def _graph_capture() -> bool:
    """True while torch.jit / torch.export / torch.compile / ONNX capture the forward: shape-dependent
    Python control flow must not run there."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return bool(
        torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling() or exporting()
        or torch.onnx.is_in_onnx_export()
    )  # fmt: skip


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output scaled by 0.2 and added to the input."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, residual scaled by 0.2."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator. Input/output in [0, 1], NCHW; output is `scale` times larger.

    scale 1 / 2 pixel-unshuffle the input by 4 / 2 (so H, W must be multiples of 4 / 2);
    scale 4 / 8 use two / three nearest-neighbour x2 upsampling stages.
    """

    def __init__(
        self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"RRDBNet supports scale 1, 2, 4 or 8, not {scale}")
        self.scale = scale
        self.unshuffle = {1: 4, 2: 2}.get(scale, 1)
        self.conv_first = nn.Conv2d(in_ch * self.unshuffle**2, nf, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.n_up = 3 if scale == 8 else 2
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        if self.n_up == 3:
            self.conv_up3 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    winograd = True  # CPU fp32 inference of a wide body by Winograd F(4x4, 3x3) (see the module docstring)

    @property
    def size_multiple(self) -> int:
        return self.unshuffle

    def inference_peak_elements_per_pixel(self, dtype: torch.dtype = torch.float32) -> float:
        """Peak live tensor elements per input pixel of an inference forward on a large input (the tiler's
        memory estimate): a dense block's (the outer features, the RRDB and RDB inputs, x1..x4, their
        concatenation and conv5's output: 5 nf + 8 gc channels at the body's size; measured 490-560 for
        64 / 32), since a large tail runs in strips of bounded size (TAIL_WHOLE_BYTES at most); on the CPU with
        `winograd` on and an fp32 forward (`dtype`: what the forward computes in; bf16 / fp16 run the direct
        convolutions), the Winograd body's larger figure (`winograd.peak_elements`)."""
        nf, gc = self._widths()
        param = self.conv_first.weight
        if self.winograd and param.device.type == "cpu" and dtype == torch.float32 and wino.applies(nf, gc):
            return max(5 * nf + 8 * gc, wino.peak_elements(nf, gc)) / self.unshuffle**2
        return (5 * nf + 8 * gc) / self.unshuffle**2

    def _widths(self) -> tuple[int, int]:
        return self.conv_first.out_channels, self.body[0].rdb1.conv1.out_channels if len(self.body) else 0

    def _winograd_body(self, feat: torch.Tensor) -> bool:
        """Whether this forward's body runs by Winograd: CPU fp32 inference outside graph capture."""
        if not self.winograd or torch.is_grad_enabled() or feat.device.type != "cpu":
            return False
        if feat.dtype != torch.float32 or not len(self.body) or not wino.applies(*self._widths()):
            return False
        return not _graph_capture()

    def _body(self, feat: torch.Tensor) -> torch.Tensor:
        if not self._winograd_body(feat):
            return self.body(feat)
        blocks = self.__dict__.get("_winograd_blocks")
        if blocks is None or not blocks.current():
            blocks = wino.DenseBlocks(self.body)
            self.__dict__["_winograd_blocks"] = blocks
        return blocks.body(feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self._body(feat))
        if torch.is_grad_enabled() or _graph_capture():
            return self._tail(feat)
        return self._tail_in_strips(feat)

    tail_whole_bytes: int | None = None  # this instance's threshold (`limit_tail_memory`); None: TAIL_WHOLE_BYTES

    def limit_tail_memory(self, peak_bytes: int | None) -> None:
        """Run the inference tail in strips unless its whole peak (TAIL_LIVE x its widest tensor) stays under
        `peak_bytes`; None restores the default (TAIL_WHOLE_BYTES for the widest tensor). The tiler sets it
        when it sizes tiles for a small memory peak, so that a tail under TAIL_WHOLE_BYTES, which its
        per-pixel figure does not count, cannot outgrow the tile's budget."""
        self.tail_whole_bytes = None if peak_bytes is None else min(TAIL_WHOLE_BYTES, int(peak_bytes / TAIL_LIVE))

    def _tail(self, feat: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n_up + 1):
            up = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = self.lrelu(getattr(self, f"conv_up{i}")(up))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

    def _tail_in_strips(self, feat: torch.Tensor) -> torch.Tensor:
        up = 2**self.n_up
        n, c, h, w = feat.shape
        row_bytes = feat.element_size() * n * c * w * up * up  # the widest tail tensor, per body row
        if row_bytes * h <= (TAIL_WHOLE_BYTES if self.tail_whole_bytes is None else self.tail_whole_bytes):
            return self._tail(feat)
        rows = max(TAIL_MIN_ROWS, TAIL_STRIP_BYTES // row_bytes)
        strips = []
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            s0, s1 = max(0, r0 - TAIL_HALO), min(h, r1 + TAIL_HALO)
            y = self._tail(feat[:, :, s0:s1])
            strips.append(y[:, :, (r0 - s0) * up : (r1 - s0) * up])
        return torch.cat(strips, dim=2)
