"""Evaluation throughput: images per second of feature extraction for the distribution metrics (Inception-v3
at 299x299, batched, streamed from a folder through the project's image loader), with the random-weights
stand-in (the FID weights file is not needed: the network and its cost are the same). Prints a table and
writes benchmarks/results/eval.json.

Run: python benchmarks/bench_eval.py [--images DIR] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from machine import describe, headline

HERE = Path(__file__).parent
DATA = Path(os.environ.get("IMG2IMG_DATA", HERE.parent.parent / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=DATA / "horse2zebra" / "testB")
    ap.add_argument("--max-images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=str(HERE / "results" / "eval.json"))
    args = ap.parse_args()
    import shutil

    from img2img.eval.features import extract_folder, list_images, make_extractor

    files = list_images(args.images)[: args.max_images]
    if not files:
        raise SystemExit(f"no images in {args.images}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / f.name)
        extractor = make_extractor("random", seed=0)
        for preprocess in ("pytorch-fid", "clean-fid"):
            extract_folder(folder, extractor, preprocess=preprocess, batch_size=args.batch)  # warm-up
            t = time.perf_counter()
            fs = extract_folder(folder, extractor, preprocess=preprocess, batch_size=args.batch)
            dt = time.perf_counter() - t
            rows.append({"extractor": "inception-v3 (random weights)", "preprocess": preprocess, "images": len(files),
                         "batch": args.batch, "seconds": dt, "images_per_s": len(files) / dt,
                         "feature_dim": int(fs.pool.shape[1])})  # fmt: skip
    info = describe()
    print(f"\nfeature extraction on {headline(info)} ({args.images}, {len(files)} images)")
    for r in rows:
        print(f"  {r['preprocess']:12} {r['images_per_s']:6.1f} images/s  ({r['feature_dim']}-d pool features)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**info, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
