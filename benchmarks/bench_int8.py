"""Static int8 quantization of the SR models with onnxruntime's quantizer (QDQ, per-channel int8 weights,
uint8 activations, min-max calibration on 8 real BSDS200 crops), against the fp32 ONNX graph and the torch
engine: speed on a Set14 LR crop and PSNR(int8 output, fp32 output). `--precision int8` would be offered only
where int8 is >= 1.5x the best other precision at >= 40 dB; this records whether any configuration passes.

Configurations: every convolution in int8, and the first and last convolutions kept in fp32 (the layers that
see the image and write the result).

    python benchmarks/bench_int8.py [--models realesr-animevideov3,esrgan-small-x4,realesrgan-x4plus]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe, headline

HERE = Path(__file__).parent
REPO = HERE.parent
DATA = Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data"))
SIDES = {"realesr-animevideov3": 128, "esrgan-small-x4": 128, "realesrgan-x4plus": 64}


def crop(path: Path, side: int) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
    return np.ascontiguousarray(a[:side, :side].transpose(2, 0, 1)[None])


def best_time(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return float(10 * np.log10(1 / mse)) if mse > 0 else float("inf")


def main() -> None:
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import img2img
    from img2img.infer.onnx import export_onnx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(SIDES))
    ap.add_argument("--out", default=str(HERE / "results" / "int8.json"))
    args = ap.parse_args()
    threads = torch.get_num_threads()
    calib = sorted((DATA / "sr" / "BSDS200").glob("*"))[:8]
    probe = sorted((DATA / "sr" / "Set14" / "image_SRF_4").glob("*_LR.png"))[2]
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in args.models.split(","):
            side = SIDES.get(name, 128)
            model = img2img.load(name, device="cpu", precision="fp32")
            fp32 = tmp / f"{name}.onnx"
            export_onnx(model, fp32, exporter="torchscript")
            pre = tmp / f"{name}.pre.onnx"
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(fp32), options, providers=["CPUExecutionProvider"])
            x = crop(probe, side)
            want = session.run(None, {"image": x})[0]
            t_torch = best_time(lambda m=model, x=x: m.run_tensor(torch.from_numpy(x), tile=0))
            t_fp32 = best_time(lambda s=session, x=x: s.run(None, {"image": x}))
            for label, exclude in (("all convs int8", []), ("first and last conv fp32", [convs[0], convs[-1]])):

                class Reader(CalibrationDataReader):
                    def __init__(self, side: int) -> None:
                        self.items = iter([{"image": crop(p, side)} for p in calib])

                    def get_next(self) -> dict | None:
                        return next(self.items, None)

                q = tmp / f"{name}.int8.onnx"
                quantize_static(
                    str(pre), str(q), Reader(side), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=exclude,
                )  # fmt: skip
                s8 = ort.InferenceSession(str(q), options, providers=["CPUExecutionProvider"])
                got = s8.run(None, {"image": x})[0]
                t_int8 = best_time(lambda s=s8, x=x: s.run(None, {"image": x}))
                best_other = min(t_torch, t_fp32)
                rows.append({
                    "model": name, "input": f"{side}x{side}", "config": label, "torch_fp32_s": t_torch,
                    "onnxruntime_fp32_s": t_fp32, "int8_s": t_int8, "int8_vs_best_other": best_other / t_int8,
                    "psnr_int8_vs_fp32_db": psnr(got, want),
                    "passes_guard": bool(best_other / t_int8 >= 1.5 and psnr(got, want) >= 40),
                })  # fmt: skip
    info = {**describe(), "threads": threads}
    print(f"\nint8 (onnxruntime static, QDQ) on {headline(info)}")
    print(f"{'model':22} {'input':>8} {'config':26} {'torch':>7} {'ort fp32':>8} {'int8':>7} {'speed':>6} {'PSNR':>8}")
    for r in rows:
        print(
            f"{r['model']:22} {r['input']:>8} {r['config']:26} {r['torch_fp32_s']:7.3f} {r['onnxruntime_fp32_s']:8.3f} "
            f"{r['int8_s']:7.3f} {r['int8_vs_best_other']:5.2f}x {r['psnr_int8_vs_fp32_db']:6.1f} dB"
            + ("  passes" if r["passes_guard"] else "")
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**info, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
