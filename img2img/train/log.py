"""What a run reports (main process only): a status line every `log_every` steps, `stats.jsonl`,
TensorBoard scalars and sample grids when tensorboard is installed, a tqdm bar, and PNG grids in
`out_dir/samples/`."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.io.fileio import atomic_target


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def make_grid(rows: list[list[torch.Tensor]], pad: int = 2) -> np.ndarray:
    """HxWx3 uint8 grid: one row per list, each CHW image in [0, 1] centred in a cell of the
    largest size (grey / single-channel images are shown as RGB)."""
    cells = [[t.detach().float().cpu().clamp(0, 1) for t in row] for row in rows if row]
    cells = [[t.expand(3, -1, -1) if t.shape[0] == 1 else t[:3] for t in row] for row in cells]
    h = max(t.shape[1] for row in cells for t in row)
    w = max(t.shape[2] for row in cells for t in row)
    ncol = max(len(row) for row in cells)
    grid = torch.ones(3, len(cells) * (h + pad) + pad, ncol * (w + pad) + pad)
    for r, row in enumerate(cells):
        for c, t in enumerate(row):
            y = pad + r * (h + pad) + (h - t.shape[1]) // 2
            x = pad + c * (w + pad) + (w - t.shape[2]) // 2
            grid[:, y : y + t.shape[1], x : x + t.shape[2]] = t
    return (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


class RunLogger:
    """Collects per-step loss terms, prints averages, appends `stats.jsonl`; a no-op off rank 0."""

    def __init__(self, out_dir: Path, total_steps: int, start_step: int, *, enabled: bool, progress: bool) -> None:
        self.enabled = enabled
        self.out_dir = out_dir
        self.total = total_steps
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.t0, self.step0 = time.perf_counter(), start_step
        self.tb = None
        self.bar = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.stats = open(out_dir / "stats.jsonl", "a", buffering=1)  # closed in close()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=start_step or None)
        except ImportError:  # tensorboard is optional
            self.tb = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="it", dynamic_ncols=True, file=sys.stderr)

    def add(self, terms: dict[str, float]) -> None:
        for k, v in terms.items():
            self.sums[k] += v
            self.counts[k] += 1

    def step(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def flush(self, step: int, extra: dict[str, Any], mean: Any = None) -> dict[str, float]:
        """Average what was added since the last flush; print + record it. Returns the averages.
        `mean(list) -> list` averages the values over processes (every rank must call flush)."""
        avg = {k: self.sums[k] / self.counts[k] for k in self.sums}
        if mean is not None:
            avg = dict(zip(avg, mean(list(avg.values())), strict=True))
        self.sums.clear()
        self.counts.clear()
        if not self.enabled:
            return avg
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.step0) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        terms = "  ".join(f"{k} {v:.4g}" for k, v in avg.items())
        self.write(f"step {step}/{self.total}  {rate:.2f} it/s  ETA {format_eta(eta)}  {terms}")
        self.record(step, {"loss": avg, "it_per_s": rate, **extra})
        return avg

    def record(self, step: int, values: dict[str, Any]) -> None:
        """Append one JSON line and mirror the numbers to TensorBoard."""
        if not self.enabled:
            return
        self.stats.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
        if self.tb is not None:
            for key, value in _flatten(values).items():
                self.tb.add_scalar(key, value, step)

    def write(self, line: str) -> None:
        """The status line: through tqdm so it does not break the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def samples(self, step: int, rows: list[list[torch.Tensor]]) -> Path | None:
        if not self.enabled or not rows:
            return None
        from PIL import Image

        grid = make_grid(rows)
        path = self.out_dir / "samples" / f"step_{step:08d}.png"
        with atomic_target(path) as tmp:
            Image.fromarray(grid).save(tmp, format="PNG")
        if self.tb is not None:
            self.tb.add_image("samples", grid, step, dataformats="HWC")
        return path

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        self.stats.close()


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def training_time(stats_path: Path, up_to_step: int | None = None) -> dict[str, float] | None:
    """Wall time spent training, from a run's `stats.jsonl`: each logged window's steps divided by its
    it/s, counting a step once when a resumed run logged it again. None without usable records."""
    import json

    if not stats_path.is_file():
        return None
    rate: dict[int, float] = {}
    for line in stats_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(rec, dict) and rec.get("it_per_s") and "step" in rec and "val" not in rec:
            rate[int(rec["step"])] = float(rec["it_per_s"])  # the later run's record wins
    steps = sorted(s for s in rate if up_to_step is None or s <= up_to_step)
    if not steps:
        return None
    seconds, prev = 0.0, 0
    for s in steps:
        seconds += (s - prev) / rate[s]
        prev = s
    return {"wall_time_s": round(seconds, 3), "it_per_s": round(prev / seconds, 3), "steps_timed": float(prev)}
