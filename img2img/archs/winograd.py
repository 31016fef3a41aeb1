"""RRDBNet's dense blocks by Winograd F(4x4, 3x3) (Lavin & Gray 2016, "Fast Algorithms for Convolutional
Neural Networks"): the CPU fp32 inference path of the wide RRDB models.

A 3x3 convolution costs 144 multiplications per 4x4 output tile directly and 36 this way. oneDNN's fp32
3x3 convolutions are compute bound on CPUs without a faster kernel (measured here near the AVX2 peak), so
fewer multiplications are what is left to gain. How it runs:

- Feature maps live as N x (4 th + 2) x (4 tw + 2) x C (NHWC), zero outside the image: the windows'
  padding, and the zeros that fill the last row and column of tiles.
- A feature map's input transform (B^T d B over the 6x6 windows at stride 4) is done once and kept in
  a per-block buffer [36, tiles, channels]: a dense block's convs read growing prefixes of it, so each
  conv is one batched GEMM over the 36 positions (kernels transformed once, G g G^T).
- The output transform (A^T m A) gives the 4x4 tiles; bias and LeakyReLU follow on the padded map.

The result equals the direct convolution's up to fp32 rounding (max abs difference ~1e-5 on [0, 1]
outputs, PSNR > 100 dB). It pays off for wide blocks (64 features, growth 32: `applies`); narrow ones
are faster direct. Memory: the buffer holds 36/16 x (nf + 4 gc) values per pixel (`peak_elements` counts all it holds).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# F(4x4, 3x3) with the points 0, +-1, +-2 and infinity.
BT = torch.tensor(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
     [0, 4, 0, -5, 0, 1]], dtype=torch.float64,
)  # fmt: skip
G = torch.tensor(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
     [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64,
)  # fmt: skip
AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float64
)
_BT32, _AT32 = BT.float(), AT.float()

MIN_FEATURES, MIN_GROWTH = 64, 32  # narrower dense blocks run faster as direct convolutions


def applies(nf: int, gc: int) -> bool:
    """Whether dense blocks of `nf` features and growth `gc` take this path (measured in
    benchmarks/bench_winograd.py: 1.05-1.47x for 64 / 32, 0.91-1.11x for 32 / 16)."""
    return nf >= MIN_FEATURES and gc >= MIN_GROWTH


def peak_elements(nf: int, gc: int) -> float:
    """Values per pixel a Winograd body holds: the transform buffer (36/16 of nf + 4 gc), two scratch
    areas (36/16 of the wider of nf, gc each), the padded maps (three of nf, one of gc) and the body's
    input (nf)."""
    return 36 / 16 * (nf + 4 * gc) + 2 * 36 / 16 * max(nf, gc) + 4 * nf + gc


def transformed_kernel(w: torch.Tensor) -> torch.Tensor:
    """[O, C, 3, 3] -> [36, C, O]: G g G^T for every (out, in) pair, positions ordered (column, row)."""
    u = torch.einsum("ki,ocij,lj->lkco", G, w.double(), G)
    return u.reshape(36, w.shape[1], w.shape[0]).float().contiguous()


class Grid:
    """The 4x4 output tiles of an N x H x W feature map, the transforms on its padded maps and the scratch
    memory they reuse: one body's maps and buffers are allocated once and rewritten block after block
    (fresh large allocations each cost page faults that were measured as slow as the arithmetic)."""

    def __init__(self, n: int, h: int, w: int, nf: int, gc: int, like: torch.Tensor) -> None:
        self.n, self.h, self.w = n, h, w
        self.th, self.tw = -(-h // 4), -(-w // 4)
        self.tiles = t = n * self.th * self.tw
        widest = max(nf, gc)
        self.buf = like.new_empty(36, t, nf + 4 * gc)  # the block input's and x1..x4's transforms
        # Two scratch areas: windows / the 2-D transform or the GEMM products / the 4x4 tiles, and the
        # 1-D transform in between (each result is written where its input's input was).
        self._one = like.new_empty(36 * t * widest)
        self._two = like.new_empty(36 * t * widest)
        self._gc_map = self.new_map(gc)

    def new_map(self, c: int) -> torch.Tensor:
        p = self.buf.new_empty(self.n, 4 * self.th + 2, 4 * self.tw + 2, c)
        return self._zero_border(p)

    def _zero_border(self, p: torch.Tensor) -> torch.Tensor:
        p[:, 0].zero_()
        p[:, self.h + 1 :].zero_()
        p[:, :, 0].zero_()
        p[:, :, self.w + 1 :].zero_()
        return p

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W (any memory format) -> padded N x (4 th + 2) x (4 tw + 2) x C."""
        p = self.new_map(x.shape[1])
        p[:, 1 : self.h + 1, 1 : self.w + 1] = x.permute(0, 2, 3, 1)
        return p

    def unpad(self, p: torch.Tensor) -> torch.Tensor:
        """The image part of a padded map as an N x C x H x W (channels_last) view."""
        return p[:, 1 : self.h + 1, 1 : self.w + 1].permute(0, 3, 1, 2)

    def forward_transform(self, p: torch.Tensor, into: slice) -> None:
        """Padded map -> its [36, tiles, C] transform, written into `buf[:, :, into]`."""
        c, t = p.shape[3], self.tiles
        s_n, s_h, s_w, s_c = p.stride()
        windows = p.as_strided((6, 6, self.n, self.th, self.tw, c), (s_w, s_h, s_n, 4 * s_h, 4 * s_w, s_c))
        flat = self._one[: 36 * t * c].view(6, 6, self.n, self.th, self.tw, c)
        flat.copy_(windows)
        half = self._two[: 36 * t * c].view(6, 6 * t * c)
        torch.mm(_BT32, flat.view(6, 6 * t * c), out=half)  # over the windows' columns
        whole = self._one[: 36 * t * c].view(6, 6, t * c)
        torch.matmul(_BT32, half.view(6, 6, t * c), out=whole)  # over their rows
        self.buf[:, :, into].copy_(whole.view(36, t, c))

    def conv(self, c: int, kernel: torch.Tensor, bias: torch.Tensor, leaky: bool, out: torch.Tensor) -> torch.Tensor:
        """The 3x3 conv of the first `c` transformed channels: products, inverse transform (A^T m A), bias
        and LeakyReLU 0.2 if `leaky`, written into the padded map `out` (its zero border kept)."""
        o, t = kernel.shape[2], self.tiles
        m = self._one[: 36 * t * o].view(36, t, o)
        torch.bmm(self.buf[:, :, :c], kernel, out=m)
        half = self._two[: 24 * t * o].view(4, 6 * t * o)
        torch.mm(_AT32, m.view(6, 6 * t * o), out=half)
        y = self._one[: 16 * t * o].view(4, 4, t * o)
        torch.matmul(_AT32, half.view(4, 6, t * o), out=y)
        core = out[:, 1 : 1 + 4 * self.th, 1 : 1 + 4 * self.tw]
        core.view(self.n, self.th, 4, self.tw, 4, o).copy_(
            y.view(4, 4, self.n, self.th, self.tw, o).permute(2, 3, 1, 4, 0, 5)
        )
        core.add_(bias)
        if leaky:
            F.leaky_relu_(core, 0.2)
        return self._zero_border(out)


class DenseBlocks:
    """The transformed kernels of a body's dense blocks, made once and remade when a weight changes."""

    def __init__(self, body: nn.Sequential) -> None:
        self.convs = [
            [rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5]
            for rrdb in body for rdb in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3)
        ]  # fmt: skip
        self.key = self._key()
        self.kernels = [[transformed_kernel(c.weight.detach()) for c in block] for block in self.convs]
        self.biases = [[c.bias.detach().clone() for c in block] for block in self.convs]
        self.nf, self.gc = self.kernels[0][0].shape[1], self.kernels[0][0].shape[2]

    def _key(self) -> tuple:
        return tuple((c.weight.data_ptr(), c.weight._version, c.bias.data_ptr(), c.bias._version)
                     for block in self.convs for c in block)  # fmt: skip

    def current(self) -> bool:
        return self._key() == self.key

    def run_block(self, i: int, grid: Grid, p: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Dense block i (conv1..conv5 with LeakyReLU, x5 * 0.2 + x) on the padded map `p`, into `out`."""
        kernels, biases, nf, gc = self.kernels[i], self.biases[i], self.nf, self.gc
        grid.forward_transform(p, slice(0, nf))
        c = nf
        for k in range(4):
            xk = grid.conv(c, kernels[k], biases[k], True, grid._gc_map)
            grid.forward_transform(xk, slice(c, c + gc))
            c += gc
        x5 = grid.conv(c, kernels[4], biases[4], False, out)
        return x5.mul_(0.2).add_(p)

    def body(self, feat: torch.Tensor) -> torch.Tensor:
        """RRDBNet's body (RRDBs of three dense blocks, residual 0.2) on `feat` (N x nf x H x W)."""
        n, _, h, w = feat.shape
        grid = Grid(n, h, w, self.nf, self.gc, feat)
        outer = grid.pad(feat)  # each RRDB's input, updated in place to its output
        a, b = grid.new_map(self.nf), grid.new_map(self.nf)
        for r in range(0, len(self.convs), 3):
            self.run_block(r, grid, outer, a)
            self.run_block(r + 1, grid, a, b)
            self.run_block(r + 2, grid, b, a)
            outer.add_(a, alpha=0.2)
        return grid.unpad(outer)
