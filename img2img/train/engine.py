"""The one training engine. `Trainer(cfg).fit()` runs any recipe: it owns devices, seeding, phases and
their optimizers, mixed precision, gradient sync across processes, clipping, LR schedules, EMA,
logging, sample grids, validation, checkpoints, resume and the final export."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from img2img.errors import ConfigError, ImageError, Img2ImgError
from img2img.io.fileio import atomic_write_text
from img2img.recipes import RECIPES
from img2img.recipes.base import Phase, batch_size_of
from img2img.train import checkpoint as ckpt
from img2img.train import dist
from img2img.train.config import RunConfig, ScheduleConfig
from img2img.train.ema import EMA
from img2img.train.log import RunLogger

_MIN_SEEN_FOR_SKIP_CHECK = 64  # judge the unreadable fraction only once it means something


def resolve_amp(amp: str, device: torch.device, info: dist.DistInfo | None = None) -> tuple[str, str]:
    """(the autocast train.amp asks for on `device`: off | bf16 | fp16, why when it was chosen by auto).

    auto picks bf16 on a CPU that computes it natively (`devices.native_bf16`: AVX512-BF16 or AMX, where
    bf16 steps measured 1.56x for pix2pix and 1.97x for CycleGAN over fp32, with the same validation
    scores on a whole facades run), and off everywhere else: emulated bf16 (AVX2-only CPUs) is 10-30x
    slower than fp32, and on CUDA/MPS nothing was measured here, so GPU mixed precision is asked for
    explicitly. Under torchrun every rank must agree: bf16 only when all CPUs have it natively."""
    if amp != "auto":
        return amp, ""
    if device.type != "cpu":
        return "off", f" (auto: set train.amp=bf16 for mixed precision on {device.type})"
    from img2img.devices import native_bf16

    native = native_bf16()
    if info is not None and info.distributed:
        native = not dist.any_across(not native, info)
    if native:
        return "bf16", " (auto: native bf16 CPU)"
    return "off", " (auto: bf16 would be emulated on this CPU)"


class NonFiniteLossError(Img2ImgError):
    """A loss term or gradient became NaN/Inf; training stopped before it reached the weights."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def lr_factor(s: ScheduleConfig, step: int, total: int) -> float:
    """Multiplier of each phase's base lr at `step` (0-based iteration about to run)."""
    if s.kind == "linear":
        start = total - s.decay_steps
        f = 1.0 - max(0, step - start) / max(1, s.decay_steps) if s.decay_steps else 1.0
    elif s.kind == "multistep":
        f = s.gamma ** sum(step >= m for m in s.milestones)
    elif s.kind == "cosine":
        f = s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    else:
        f = 1.0
    if s.warmup_steps and step < s.warmup_steps:
        f *= (step + 1) / s.warmup_steps
    return f


@dataclass
class TrainResult:
    step: int
    out_dir: Path
    losses: dict[str, float] = field(default_factory=dict)  # averages of the last logging window
    metrics: dict[str, float] = field(default_factory=dict)  # last validation
    checkpoint: Path | None = None
    exported: list[Path] = field(default_factory=list)


class Trainer:
    """Per iteration: one batch; for each due phase, grads on for its networks only, the recipe's
    loss terms under autocast, a finiteness check, backward, gradient all-reduce, clip, step, EMA;
    then buffers synced, and logging / samples / validation / checkpoints when due. Rank 0 writes."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg, t = cfg, cfg.train
        self.info = dist.init_distributed(t.device)
        self.device = self.info.device
        if t.amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.amp: fp16 needs a CUDA device; use bf16 (CPU autocast) or off")
        self.amp, self.amp_why = resolve_amp(t.amp, self.device, self.info)
        self.out_dir = Path(t.out_dir)
        ckpt.refuse_earlier_run(self.out_dir, t.resume, t.overwrite)  # before anything is built or written
        # Same seed on every rank so networks start identical; ranks diverge (data, dropout) below.
        seed_everything(t.seed)
        self.recipe = RECIPES[cfg.recipe](cfg.spec, seed=t.seed)
        self.nets = {
            k: dist.maybe_sync_batchnorm(v, self.info).to(self.device) for k, v in self.recipe.build_networks().items()
        }
        # auto: channels_last for CUDA mixed precision (tensor cores). On CPU, training steps measured
        # slower in channels_last than NCHW (benchmarks/bench_train.py: 0.79-0.93x), unlike inference.
        self.channels_last = t.memory_format == "channels_last" or (
            t.memory_format == "auto" and self.device.type == "cuda" and self.amp != "off"
        )
        if self.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        self.aux = {k: m.to(self.device).eval() for k, m in self.recipe.aux_modules().items()}
        self.phases = self.recipe.phases()
        self.params: dict[str, list[nn.Parameter]] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.notes: list[str] = []  # reported once the logger exists
        for p in self.phases:
            self.params[p.name], self.optims[p.name] = self._optimizer(p)
        self.scalers = {p.name: torch.amp.GradScaler("cuda", enabled=self.amp == "fp16") for p in self.phases}
        self.ema = EMA(self.nets, t.ema.networks, t.ema.decay, t.ema.warmup)
        if t.compile:  # in place, after the EMA copies: parameters, state dicts and checkpoints stay as they are
            from img2img.compiling import prepare

            prepare()
            for net in self.nets.values():
                net.compile()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.seen, self.skipped = 0, 0
        self.metrics: dict[str, float] = {}
        self.grad_norms: dict[str, float] = {}
        self.log = RunLogger(self.out_dir, t.steps, 0, enabled=False, progress=False)

    def _optimizer(self, phase: Phase) -> tuple[list[nn.Parameter], torch.optim.Optimizer]:
        unknown = [n for n in phase.networks if n not in self.nets]
        if unknown:
            raise ConfigError(f"phase {phase.name!r} trains {unknown}, not among networks {sorted(self.nets)}")
        params = [p for n in phase.networks for p in self.nets[n].parameters()]
        cls = torch.optim.AdamW if phase.weight_decay > 0 else torch.optim.Adam
        kwargs = dict(lr=phase.lr, betas=phase.betas, weight_decay=phase.weight_decay)
        # One fused kernel over all parameters instead of a loop of small ops: the same update (state
        # layout and checkpoints too), ~5x faster for a 54 M-parameter U-Net on a 2-core CPU.
        fusable = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
        if self.cfg.train.fused_adam and fusable and params:
            try:
                return params, cls(params, fused=True, **kwargs)
            except (RuntimeError, ValueError) as e:  # a torch build without the kernel for these tensors
                self.notes.append(f"fused Adam unavailable ({e}); using the default implementation")
        return params, cls(params, **kwargs)

    # ------------------------------------------------------------------ run

    def fit(self) -> TrainResult:
        """Train to `train.steps` (resuming / initialising as configured); returns what happened."""
        try:
            return self._fit()
        finally:
            self.log.close()
            dist.shutdown(self.info)

    def _fit(self) -> TrainResult:
        t, main = self.cfg.train, self.info.is_main
        self._start()
        self.log = RunLogger(self.out_dir, t.steps, self.step, enabled=main, progress=t.progress)
        for line in [self._banner(), *self.recipe.notes, *self.notes]:
            self.log.write(line)
        data = self._batches()
        last: dict[str, float] = {}
        result = TrainResult(step=self.step, out_dir=self.out_dir)
        while self.step < t.steps:
            batch = next(data)
            self._set_lr(self.step)
            scratch: dict[str, Any] = {"step": self.step}
            for phase in self.phases:
                if self.step % phase.every == 0:
                    self.log.add(self._run_phase(phase, batch, scratch))
            dist.broadcast_buffers({**self.nets, **{f"ema_{k}": v for k, v in self.ema.shadow.items()}}, self.info)
            self.step += 1
            self.log.step(self.step)
            if self.step % t.log_every == 0 or self.step == t.steps:
                last = self.log.flush(self.step, self._extra(), self._mean_over_ranks)
            if main and t.sample_every and self.step % t.sample_every == 0:
                self._sample(batch)
            if t.val_every and self.step % t.val_every == 0:
                self._validate()
            if self.step % t.ckpt_every == 0 and self.step < t.steps:
                result.checkpoint = self._save()
        if not (t.val_every and self.step % t.val_every == 0):
            self._validate()
        result.checkpoint = self._save()
        if main:
            state = ckpt.load_state(result.checkpoint)
            result.exported = ckpt.export_weights(
                state, self.out_dir.name, self.out_dir / "weights", source=str(result.checkpoint)
            )
            self.log.write(f"done: step {self.step}; weights {', '.join(map(str, result.exported))}")
        dist.barrier(self.info)
        result.step, result.losses, result.metrics = self.step, last, dict(self.metrics)
        return result

    def _banner(self) -> str:
        t = self.cfg.train
        sizes = ", ".join(f"{k} {sum(p.numel() for p in v.parameters()) / 1e6:.2f}M" for k, v in self.nets.items())
        phases = ", ".join(
            f"{p.name}{p.networks} lr {p.lr:g}" + (f" every {p.every}" if p.every > 1 else "") for p in self.phases
        )
        return (
            f"{self.cfg.recipe}: {sizes}; phases {phases}; {self.info.world_size} process(es) on "
            f"{self.device}, amp {self.amp}{self.amp_why}; steps {self.step}->{t.steps}; out {self.out_dir}"
        )

    def _start(self) -> None:
        """Resume or initialise weights, make ranks agree, then seed each rank differently."""
        t = self.cfg.train
        resumed = ckpt.resolve_resume(t.resume, self.out_dir) if t.resume else None
        if resumed is not None:
            self._load(*resumed)
        else:
            self._init_from()
        dist.broadcast_networks(self.nets, self.info)
        dist.broadcast_networks(self.ema.shadow, self.info)
        rngs = resumed[1].get("rng", []) if resumed else []
        if len(rngs) == self.info.world_size:
            ckpt.set_rng_state(rngs[self.info.rank])
        else:
            seed_everything(t.seed + self.info.rank + 7919 * self.step)
        if self.info.is_main:
            if resumed is None and t.overwrite:
                ckpt.clear_earlier_run(self.out_dir)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_temp_files(self.out_dir)
            atomic_write_text(self.out_dir / "config.yaml", self.cfg.to_yaml())
        dist.barrier(self.info)

    def _init_from(self) -> None:
        for name, source in {**self.recipe.init_sources(), **self.cfg.train.init_from}.items():
            if name not in self.nets:
                raise ConfigError(f"train.init_from.{name}: no such network; this recipe has {sorted(self.nets)}")
            sd, arch, what = ckpt.network_weights(source, name)
            ckpt.load_into(self.nets[name], sd, arch, what, f"train.init_from.{name}")
            self.notes.append(f"init {name} from {what}")
        self.ema.reset_from(self.nets)

    # ------------------------------------------------------------------ one phase

    def _autocast(self) -> contextlib.AbstractContextManager:
        amp = self.amp
        if amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _run_phase(self, phase: Phase, batch: dict[str, Any], scratch: dict[str, Any]) -> dict[str, float]:
        # Only this phase's networks collect gradients; the others still run forward.
        for name, net in self.nets.items():
            net.requires_grad_(name in phase.networks)
        opt, scaler, params = self.optims[phase.name], self.scalers[phase.name], self.params[phase.name]
        with self._autocast():
            terms = self.recipe.losses(phase.name, batch, self.nets, scratch)
        values = self._check_finite(phase.name, terms)
        opt.zero_grad(set_to_none=True)
        scaler.scale(torch.stack([v.float() for v in terms.values()]).sum()).backward()
        dist.allreduce_gradients(params, self.info)
        scaler.unscale_(opt)
        grads = [p.grad for p in params if p.grad is not None]
        clip = self.cfg.train.grad_clip
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip) if clip else torch.nn.utils.get_total_norm(grads))
        # With fp16 an overflow is normal: the scaler skips the step. Otherwise it is fatal.
        if not math.isfinite(norm) and not scaler.is_enabled():
            raise NonFiniteLossError(
                f"step {self.step}, phase {phase.name}: the gradient norm is {norm} although every loss "
                "term is finite; lower the learning rate or set train.grad_clip; no weights were written"
            )
        scaler.step(opt)
        scaler.update()
        for name in phase.networks:
            self.ema.update(name, self.nets[name])
        self.grad_norms[phase.name] = norm
        return {f"{phase.name}/{k}": v for k, v in values.items()}

    def _check_finite(self, phase: str, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        if not terms:
            raise ConfigError(f"recipe {self.cfg.recipe} returned no loss terms for phase {phase!r}")
        values = dict(
            zip(
                terms,
                torch.stack([v.detach().float().reshape(()) for v in terms.values()]).tolist(),
                strict=True,
            )
        )
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if dist.any_across(bool(bad), self.info):
            where = f"term {', '.join(f'{k}={values[k]}' for k in bad)}" if bad else "a term on another process"
            raise NonFiniteLossError(
                f"step {self.step}, phase {phase}: non-finite loss ({where}); stopped before the update, "
                f"no weights were written. Last checkpoint: {ckpt.ckpt_dir(self.out_dir)}. Try a lower lr, "
                "train.grad_clip, or train.amp=off"
            )
        return values

    def _set_lr(self, step: int) -> None:
        f = lr_factor(self.cfg.train.schedule, step, self.cfg.train.steps)
        for p in self.phases:
            for group in self.optims[p.name].param_groups:
                group["lr"] = p.lr * f

    def _mean_over_ranks(self, values: list[float]) -> list[float]:
        return [v / self.info.world_size for v in dist.sum_across(values, self.info)]

    def _extra(self) -> dict[str, Any]:
        lrs = {p.name: self.optims[p.name].param_groups[0]["lr"] for p in self.phases}
        return {"lr": lrs, "grad_norm": dict(self.grad_norms), "skipped": self.skipped, "epoch": self.epoch}

    # ------------------------------------------------------------------ data

    def _batches(self) -> Iterator[dict[str, Any]]:
        """Endless device batches in a deterministic order that resumes mid-epoch."""
        from img2img.data.base import skip_collate

        t = self.cfg.train
        dataset = self.recipe.make_dataset()
        sampler = dist.ResumableSampler(dataset, self.info, seed=t.seed)
        per_epoch = sampler.num_samples // t.batch_size
        if per_epoch == 0:
            raise ConfigError(
                f"train.batch_size: {t.batch_size} is larger than the {sampler.num_samples} samples each of "
                f"{self.info.world_size} process(es) gets from {len(dataset)}; lower it or add data"
            )
        gen = torch.Generator().manual_seed(t.seed + self.info.rank)
        loader = DataLoader(
            dataset, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers, drop_last=True,
            collate_fn=skip_collate, pin_memory=self.device.type == "cuda", generator=gen,
            persistent_workers=t.num_workers > 0,  # keeps the datasets' per-worker image caches
        )  # fmt: skip
        while True:
            sampler.set_epoch(self.epoch, skip=self.batch_in_epoch * t.batch_size)
            if hasattr(dataset, "set_epoch"):  # per-sample randomness from (seed, epoch, index)
                dataset.set_epoch(self.epoch)
            for batch in loader:
                self.batch_in_epoch += 1
                batch = self._count_skipped(batch)
                if batch is not None:
                    yield {k: self._to_device(v) for k, v in batch.items()}
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _to_device(self, v: Any) -> Any:
        if not torch.is_tensor(v):
            return v
        v = v.to(self.device, non_blocking=True)
        return v.contiguous(memory_format=torch.channels_last) if self.channels_last and v.ndim == 4 else v

    def _count_skipped(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        """Track unreadable samples across ranks; abort above the allowed fraction. None = every
        rank should skip this batch (one rank got only unreadable samples)."""
        skipped = int(batch.pop("_skipped", 0))
        n = batch_size_of(batch)
        total_n, total_skip, empty = dist.sum_across([n + skipped, skipped, float(n == 0)], self.info)
        self.seen += int(total_n)
        self.skipped += int(total_skip)
        limit = self.cfg.train.max_skipped_fraction
        if self.seen >= _MIN_SEEN_FOR_SKIP_CHECK and self.skipped > limit * self.seen:
            raise ImageError(
                f"{self.skipped} of {self.seen} samples ({self.skipped / self.seen:.1%}) could not be read, "
                f"above train.max_skipped_fraction={limit}; fix or remove the files named in the warnings"
            )
        return None if empty else batch

    # ------------------------------------------------------------------ samples, validation, checkpoints

    @contextlib.contextmanager
    def _eval_nets(self) -> Iterator[dict[str, nn.Module]]:
        """The nets users would see (EMA where kept), in eval mode, restored to train mode after."""
        nets = self.ema.networks(self.nets)
        modes = {k: n.training for k, n in nets.items()}
        for n in nets.values():
            n.eval()
        try:
            with torch.no_grad(), self._autocast():
                yield nets
        finally:
            for k, n in nets.items():
                n.train(modes[k])

    def _sample(self, batch: dict[str, Any]) -> None:
        with self._eval_nets() as nets:
            rows = self.recipe.sample_images(batch, nets)
        self.log.samples(self.step, rows)

    def _validate(self) -> None:
        if self.info.is_main:
            with self._eval_nets() as nets:
                metrics = self.recipe.validate(nets, self.device)
            if metrics:
                self.metrics = {**metrics, "step": self.step}
                self.log.record(self.step, {"val": metrics})
                self.log.write(f"val step {self.step}: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        dist.barrier(self.info)

    def _state(self) -> dict[str, Any]:
        t = self.cfg.train
        data = {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "seen": self.seen,
            "skipped": self.skipped,
        }
        return {
            "networks": {k: v.state_dict() for k, v in self.nets.items()},
            "ema": self.ema.state_dict(),
            "ema_updates": dict(self.ema.updates),
            "optimizers": {k: v.state_dict() for k, v in self.optims.items()},
            "scalers": {k: v.state_dict() for k, v in self.scalers.items()},
            "schedule": {"kind": t.schedule.kind, "factor": lr_factor(t.schedule, self.step, t.steps)},
            "recipe": self.recipe.state_dict(),
            "data": data,
            "metrics": self.metrics,
            "config": self.cfg.to_dict(),
            "amp": self.amp,  # what train.amp resolved to on this machine (auto differs between CPUs)
        }  # fmt: skip

    def _save(self) -> Path:
        """All ranks hand in their RNG state; rank 0 writes; everyone waits for the file."""
        rngs = dist.all_gather_object(ckpt.rng_state(), self.info)
        path = ckpt.ckpt_dir(self.out_dir) / f"step_{self.step:08d}.pt"
        if self.info.is_main:
            ckpt.save_checkpoint(self.out_dir, self.step, {**self._state(), "rng": rngs}, self.cfg.train.keep_last)
        dist.barrier(self.info)
        return path

    def _load(self, path: Path, state: dict[str, Any]) -> None:
        for name, net in self.nets.items():
            if name not in state["networks"]:
                raise ConfigError(f"train.resume: {path} has no network {name!r}; was it made with another recipe?")
            ckpt.load_into(net, state["networks"][name], None, str(path), "train.resume")
        self.ema.load_state_dict(state.get("ema", {}), state.get("ema_updates", {}))
        for name, opt in self.optims.items():
            if name in state["optimizers"]:
                opt.load_state_dict(state["optimizers"][name])
        for name, scaler in self.scalers.items():
            if name in state.get("scalers", {}) and scaler.is_enabled():
                scaler.load_state_dict(state["scalers"][name])
        self.recipe.load_state_dict(state.get("recipe", {}))
        data = state["data"]
        self.step, self.epoch, self.batch_in_epoch = int(state["step"]), data["epoch"], data["batch_in_epoch"]
        self.seen, self.skipped = data["seen"], data["skipped"]
        self.metrics = dict(state.get("metrics", {}))
        self.notes.append(f"resumed from {path} at step {self.step}")
