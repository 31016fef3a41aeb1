"""App latency: a 512x512 upscale through the web app's HTTP API (gradio_client, as a remote user calls
it), against the same upscale through `img2img.load` in-process, so the ratio is the app's overhead
(upload, queue, worker, encode, download). Prints a table and writes benchmarks/results/app.json.

Run: python benchmarks/bench_app.py [--model realesr-animevideov3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

from machine import describe, headline

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="realesr-animevideov3")
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "app.json"))
    args = ap.parse_args()
    import numpy as np
    from gradio_client import Client, handle_file
    from PIL import Image

    import img2img
    from img2img.app import AppSettings, launch

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.png"
        small = rng.random((args.side // 8, args.side // 8, 3))
        img = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((args.side, args.side), Image.BICUBIC))
        Image.fromarray(img).save(src)
        model = img2img.load(args.model, device="cpu")
        x = img.astype(np.float32) / 255
        model(x)  # warm-up
        direct = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model(x)
            direct.append(time.perf_counter() - t)
        demo = launch(AppSettings(port=free_port()), prevent_thread_lock=True, quiet=True)
        try:
            client = Client(demo.local_url, verbose=False)

            def call() -> None:
                client.predict(handle_file(str(src)), args.model, "auto", "auto", "model", None, api_name="/upscale")

            call()  # warm-up: the app loads its model on first use
            api = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                call()
                api.append(time.perf_counter() - t)
        finally:
            demo.close()
    row = {"model": args.model, "input": f"{args.side}x{args.side}", "direct_s": statistics.median(direct),
           "http_api_s": statistics.median(api), "repeats": args.repeats}  # fmt: skip
    row["api_overhead_s"] = row["http_api_s"] - row["direct_s"]
    info = describe()
    print(f"\napp latency on {headline(info)}: {args.model}, {row['input']} -> x4, median of {args.repeats}")
    print(f"  img2img.load in-process  {row['direct_s']:.3f} s")
    print(f"  HTTP API (gradio_client) {row['http_api_s']:.3f} s  (+{row['api_overhead_s']:.3f} s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**info, "rows": [row]}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
