"""An experiment for the fp32 CPU path of the RRDB models: the dense blocks' 3x3 convolutions by Winograd
F(4x4, 3x3) (Lavin & Gray 2016), 36 multiplications per 4x4 output tile instead of 144, against torch's
direct (oneDNN) convolutions in NCHW and channels_last. Not an engine yet: it measures whether one pays.

How it runs: activations are NHWC with a zero border; a feature map's input transform (B^T d B for the
6x6 windows at stride 4) is two small matmuls over a strided view, done once per feature map and kept in
a per-block buffer [36, tiles, channels], so each of a dense block's five convs is one batched GEMM over
the 36 positions with the kernels transformed once (G g G^T); the output transform (A^T m A) is two more
matmuls. conv_first, conv_body and the upsampling tail stay oneDNN convolutions.

    python benchmarks/bench_winograd.py [--models realesrgan-x4plus,...] [--sizes 72x72,120x125]

Prints a table (forward seconds, speed against NCHW and channels_last, PSNR of the Winograd output
against the direct one) and writes benchmarks/results/winograd.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import describe, headline

HERE = Path(__file__).parent

# F(4x4, 3x3) with the points 0, +-1, +-2, inf.
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


def transformed_kernel(w: torch.Tensor) -> torch.Tensor:
    """[O, C, 3, 3] -> [36, C, O]: G g G^T for every (out, in) pair, positions ordered (column, row)."""
    u = torch.einsum("ki,ocij,lj->lkco", G, w.double(), G)
    return u.reshape(36, w.shape[1], w.shape[0]).float().contiguous()


class Grid:
    """The 4x4 output tiles of an N x H x W feature map; feature maps live as N x (4th+2) x (4tw+2) x C
    with a zero border (and zeros past H, W), the windows' padding."""

    def __init__(self, n: int, h: int, w: int) -> None:
        self.n, self.h, self.w = n, h, w
        self.th, self.tw = -(-h // 4), -(-w // 4)
        self.tiles = n * self.th * self.tw
        self.bt, self.at = BT.float(), AT.float()

    def _zero_border(self, p: torch.Tensor) -> torch.Tensor:
        p[:, 0].zero_()
        p[:, self.h + 1 :].zero_()
        p[:, :, 0].zero_()
        p[:, :, self.w + 1 :].zero_()
        return p

    def pad(self, x_nhwc: torch.Tensor) -> torch.Tensor:
        p = x_nhwc.new_empty(self.n, 4 * self.th + 2, 4 * self.tw + 2, x_nhwc.shape[3])
        p[:, 1 : self.h + 1, 1 : self.w + 1] = x_nhwc
        return self._zero_border(p)

    def forward_transform(self, p: torch.Tensor) -> torch.Tensor:
        """Padded feature map -> [36, tiles, C]."""
        c, t = p.shape[3], self.tiles
        s_n, s_h, s_w, s_c = p.stride()
        windows = p.as_strided((6, 6, self.n, self.th, self.tw, c), (s_w, s_h, s_n, 4 * s_h, 4 * s_w, s_c))
        cols = self.bt @ windows.reshape(6, 6 * t * c)  # over the window's columns
        return torch.matmul(self.bt, cols.view(6, 6, t * c)).view(36, t, c)  # over its rows

    def inverse_transform(self, m: torch.Tensor, bias: torch.Tensor, leaky: bool) -> torch.Tensor:
        """[36, tiles, O] products -> padded feature map (+ bias, LeakyReLU 0.2 if `leaky`)."""
        o, t = m.shape[2], self.tiles
        y = torch.matmul(self.at, (self.at @ m.reshape(6, 6 * t * o)).view(4, 6, t * o))
        p = m.new_empty(self.n, 4 * self.th + 2, 4 * self.tw + 2, o)
        core = p[:, 1 : 1 + 4 * self.th, 1 : 1 + 4 * self.tw]
        core.view(self.n, self.th, 4, self.tw, 4, o).copy_(
            y.view(4, 4, self.n, self.th, self.tw, o).permute(2, 3, 1, 4, 0, 5)
        )
        core.add_(bias)
        if leaky:
            F.leaky_relu_(core, 0.2)
        return self._zero_border(p)


class WinogradDenseBlock:
    """One ResidualDenseBlock (conv1..conv5 with LeakyReLU, x5 * 0.2 + x) on padded NHWC maps."""

    def __init__(self, rdb: torch.nn.Module) -> None:
        convs = [rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5]
        self.kernels = [transformed_kernel(c.weight.detach()) for c in convs]
        self.biases = [c.bias.detach() for c in convs]
        self.nf, self.gc = rdb.conv1.in_channels, rdb.conv1.out_channels

    def __call__(self, grid: Grid, p: torch.Tensor) -> torch.Tensor:
        buf = p.new_empty(36, grid.tiles, self.nf + 4 * self.gc)
        buf[:, :, : self.nf] = grid.forward_transform(p)
        c = self.nf
        for k in range(4):
            xk = grid.inverse_transform(torch.bmm(buf[:, :, :c], self.kernels[k]), self.biases[k], True)
            buf[:, :, c : c + self.gc] = grid.forward_transform(xk)
            c += self.gc
        x5 = grid.inverse_transform(torch.bmm(buf, self.kernels[4]), self.biases[4], False)
        return x5.mul_(0.2).add_(p)


def winograd_forward(net: torch.nn.Module, blocks: list[WinogradDenseBlock], x: torch.Tensor) -> torch.Tensor:
    """RRDBNet x4 forward with the body's dense blocks by Winograd."""
    feat = net.conv_first(x.contiguous(memory_format=torch.channels_last))
    n, _, h, w = feat.shape
    grid = Grid(n, h, w)
    p = grid.pad(feat.permute(0, 2, 3, 1))
    i = 0
    for _rrdb in net.body:
        r = p
        for _ in range(3):
            p = blocks[i](grid, p)
            i += 1
        p = p.mul_(0.2).add_(r)
    body = net.conv_body(p[:, 1 : h + 1, 1 : w + 1].permute(0, 3, 1, 2))
    return net._tail(feat + body)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN primitives, allocator
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(net: torch.nn.Module, blocks: list[WinogradDenseBlock], x: torch.Tensor, repeats: int) -> dict:
    with torch.inference_mode():
        nchw = net.to(memory_format=torch.contiguous_format)
        t_nchw = timed(lambda: nchw(x), repeats)
        cl = net.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        t_cl = timed(lambda: cl(xc), repeats)
        t_w = timed(lambda: winograd_forward(cl, blocks, x), repeats)
        ref, got = cl(xc).clamp(0, 1), winograd_forward(cl, blocks, x).clamp(0, 1)
        mse = float(((ref - got) ** 2).mean())
    return {
        "nchw_s": t_nchw, "channels_last_s": t_cl, "winograd_s": t_w, "winograd_vs_nchw": t_nchw / t_w,
        "winograd_vs_channels_last": t_cl / t_w, "psnr_vs_direct_db": 10 * math.log10(1 / max(mse, 1e-20)),
        "max_abs_vs_direct": float((ref - got).abs().max()),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="realesrgan-x4plus,realesrgan-x4plus-anime,esrgan-small-x4")
    ap.add_argument("--sizes", default="72x72,120x125", help="input WxH list (Set5 / Set14 x4 LR sizes)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "winograd.json"))
    args = ap.parse_args()
    from img2img.weights.catalog import resolve_weights
    from img2img.weights.format import load_bundle

    rows = []
    torch.manual_seed(0)
    for name in args.models.split(","):
        nets, card = load_bundle(resolve_weights(name))
        if card.arch != "RRDBNet" or card.scale != 4:
            raise SystemExit(f"{name} is not an RRDBNet x4 model")
        net = nets[""].eval().requires_grad_(False)
        blocks = [WinogradDenseBlock(rdb) for rrdb in net.body for rdb in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3)]
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            row = measure(net, blocks, torch.rand(1, 3, h, w), args.repeats)
            rows.append({"model": name, "input": f"{w}x{h}", **row})
    info = {**describe(), "threads": torch.get_num_threads()}
    print(f"\nRRDB forward, dense blocks by Winograd F(4x4,3x3), on {headline(info)}")
    print(f"{'model':24} {'input':>8} {'NCHW':>8} {'CL':>8} {'Winograd':>9} {'vs NCHW':>8} {'vs CL':>6} {'PSNR':>8}")
    for r in rows:
        print(
            f"{r['model']:24} {r['input']:>8} {r['nchw_s']:7.3f}s {r['channels_last_s']:7.3f}s {r['winograd_s']:8.3f}s "
            f"{r['winograd_vs_nchw']:7.2f}x {r['winograd_vs_channels_last']:5.2f}x {r['psnr_vs_direct_db']:6.1f}dB"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**info, "when": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
