"""Peak memory of a whole `img2img upscale` command on a large image: the peak RSS of the command on the
image minus its peak on a 32x24 image (the loaded runtime: Python, torch, the model; taken from a second run,
as a first use of a release converts it), against the size of the 8-bit result. Each run is a fresh process;
the input is a real photo (BSDS200) resized to the size.

    python benchmarks/bench_memory.py            # default model at 2000x1500, realesrgan-x4plus at 500x375
    python benchmarks/bench_memory.py --quick    # 500x375 and 250x188
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, headline

HERE = Path(__file__).parent
REPO = HERE.parent
DATA = Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data"))


def photo(path: Path, w: int, h: int) -> Path:
    from PIL import Image

    src = sorted((DATA / "sr" / "BSDS200").glob("*"))
    if not src:
        raise SystemExit(f"no BSDS200 images under {DATA}/sr")
    Image.open(src[3]).convert("RGB").resize((w, h), Image.BICUBIC).save(path)
    return path


def command_peak(image: Path, out: Path, model: str, extra: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one upscale command in a fresh process."""
    code = (
        "import resource, sys, time\n"
        "from img2img.cli import main\n"
        "t = time.perf_counter(); rc = main(sys.argv[1:]); dt = time.perf_counter() - t\n"
        "assert rc == 0, rc\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, dt)\n"
    )
    argv = ["upscale", str(image), str(out), "--model", model, "--overwrite", "--quiet", *extra]
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    rss_kb, dt = res.stdout.split()[-2:]
    return int(rss_kb) / 1024, float(dt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--models", default="realesr-animevideov3,realesrgan-x4plus")
    ap.add_argument(
        "--size",
        help="WxH for every model (default: 2000x1500 for the default model, 500x375 for "
        "x4plus, whose 2000x1500 run takes about half an hour on 2 cores; --quick: a quarter)",
    )
    args = ap.parse_args()
    sizes = {"realesr-animevideov3": (2000, 1500), "realesrgan-x4plus": (500, 375)}
    runs = []
    for model in args.models.split(","):
        w, h = (int(v) for v in args.size.split("x")) if args.size else sizes.get(model, (2000, 1500))
        runs.append((model, (w // 4, h // 4) if args.quick else (w, h)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tiny = photo(tmp / "tiny.png", 32, 24)
        for model, (w, h) in runs:
            big = photo(tmp / f"in_{w}x{h}.png", w, h)
            command_peak(tiny, tmp / "out_tiny", model, [])  # a first use converts and caches a release
            base, _ = command_peak(tiny, tmp / "out_tiny", model, [])
            peak, seconds = command_peak(big, tmp / "out_big", model, [])
            out_mb = w * h * 16 * 3 / 2**20
            rows.append({
                "model": model, "input": f"{w}x{h}", "runtime_peak_mib": base, "peak_mib": peak,
                "above_runtime_mib": peak - base, "uint8_output_mib": out_mb,
                "above_runtime_vs_output": (peak - base) / out_mb, "seconds": seconds,
            })  # fmt: skip
    info = {**describe(), "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count()}
    print(f"\nimg2img upscale peak memory on {headline(info)}")
    print(f"{'model':22} {'input':>10} {'runtime':>9} {'peak':>9} {'above':>9} {'uint8 out':>10} {'ratio':>6} {'s':>7}")
    for r in rows:
        print(
            f"{r['model']:22} {r['input']:>10} {r['runtime_peak_mib']:7.0f} M {r['peak_mib']:7.0f} M "
            f"{r['above_runtime_mib']:7.0f} M {r['uint8_output_mib']:8.0f} M {r['above_runtime_vs_output']:5.2f}x "
            f"{r['seconds']:7.1f}"
        )
    out = Path(args.out or HERE / "results" / f"memory{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**info, "when": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
