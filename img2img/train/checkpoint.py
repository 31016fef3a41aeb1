"""Training state on disk: `out_dir/checkpoints/step_NNNNNNNN.pt` (plain containers, loadable with
`torch.load(weights_only=True)`), written atomically (temp file, fsync, os.replace) and then named in
`latest.json`, also atomically. A crash at any point leaves the previous complete checkpoint usable."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img.errors import ConfigError, WeightsError, load_refusal

log = logging.getLogger(__name__)

FORMAT = "img2img-train-state"
MANIFEST = "latest.json"
_NAME = re.compile(r"^step_(\d+)\.pt$")
# Test hook: SIGKILL this process after the Nth checkpoint's temp file is written, before it is
# renamed, to prove resume survives a crash in the middle of a save.
CRASH_ENV = "IMG2IMG_CRASH_BEFORE_REPLACE"
_saves = 0


def ckpt_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> None:
    """`write(fileobj)` into path.tmp, flush + fsync, then rename over `path`."""
    global _saves
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    if path.suffix == ".pt":
        _saves += 1
        if os.environ.get(CRASH_ENV) == str(_saves):
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def all_finite(state: dict[str, dict[str, torch.Tensor]]) -> str | None:
    """Name of the first network tensor holding NaN/Inf, or None."""
    for net, sd in state.items():
        for key, t in sd.items():
            if torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
                return f"{net}.{key}"
    return None


def save_checkpoint(out_dir: str | Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write one checkpoint and the manifest, then drop all but the newest `keep_last`."""
    bad = all_finite(state["networks"]) or all_finite(state.get("ema", {}))
    if bad:
        raise ValueError(f"refusing to save step {step}: {bad} is not finite")
    folder = ckpt_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    _atomic_write(path, lambda f: torch.save({"format": FORMAT, "step": step, **state}, f))
    kept = sorted(list_checkpoints(out_dir), key=lambda p: _step_of(p))
    kept = [p for p in kept if _step_of(p) <= step][-keep_last:]
    manifest = {"latest": path.name, "step": step, "checkpoints": [p.name for p in kept]}
    _atomic_write(folder / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    for old in list_checkpoints(out_dir):
        if old not in kept:
            old.unlink(missing_ok=True)
    return path


def _step_of(path: Path) -> int:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else -1


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoint files (temp files never match), newest first."""
    folder = ckpt_dir(out_dir)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _NAME.match(p.name)), key=_step_of, reverse=True)


def load_state(path: str | Path) -> dict[str, Any]:
    """Load a training-state file safely; raises WeightsError when it is not one."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle opcode, ...: all mean "unusable"
        raise WeightsError(
            load_refusal(
                path,
                "this training state",
                e,
                "img2img checkpoints hold plain containers only, so this file "
                "was not written by img2img: export weights from the run that made it (`img2img export`).",
            )  # fmt: skip
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise WeightsError(f"{path}: not an img2img training checkpoint")
    return state


def find_resume(out_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads. The manifest's pick comes first; a newer complete file
    (a crash between rename and manifest write) or an older one (latest unreadable) is used too."""
    candidates = list_checkpoints(out_dir)
    manifest = ckpt_dir(out_dir) / MANIFEST
    if manifest.is_file():
        try:
            named = ckpt_dir(out_dir) / json.loads(manifest.read_text())["latest"]
            if named in candidates:
                candidates.remove(named)
                newer = [p for p in candidates if _step_of(p) > _step_of(named)]
                candidates = newer + [named] + [p for p in candidates if p not in newer]
        except (ValueError, KeyError, TypeError):
            log.warning("%s is unreadable; scanning checkpoint files instead", manifest)
    for path in candidates:
        try:
            return path, load_state(path)
        except WeightsError as e:
            log.warning("skipping checkpoint %s: %s; falling back to the previous one", path.name, e)
    return None


def resolve_resume(resume: str, out_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """`auto` -> newest complete checkpoint in out_dir (None when there is none); a run folder ->
    its newest; a file -> that file (errors are fatal: the user asked for it)."""
    if resume == "auto":
        return find_resume(out_dir)
    path = Path(resume)
    if path.is_dir():
        found = find_resume(path)
        if found is None:
            raise ConfigError(f"train.resume: no complete checkpoint in {path / 'checkpoints'}")
        return found
    if not path.is_file():
        raise ConfigError(f"train.resume: {path} does not exist (use auto, a run folder or a .pt file)")
    return path, load_state(path)


# ---------------------------------------------------------------- RNG state as plain containers


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- weights for one network


def network_weights(source: str, net_name: str) -> tuple[dict[str, torch.Tensor], str | None, str]:
    """Weights for `net_name` from a run folder or checkpoint (its EMA copy when kept), one of our
    .safetensors files, a released .pth, or a catalog name. Returns (state dict, arch or None, what)."""
    path = Path(source)
    if path.is_dir() and ckpt_dir(path).is_dir():
        found = find_resume(path)
        if found is None:
            raise WeightsError(f"{path}: run folder has no complete checkpoint")
        path, state = found
        return _from_state(state, net_name, path)
    if path.is_file() and path.suffix == ".pt":
        try:
            return _from_state(load_state(path), net_name, path)
        except WeightsError:
            pass  # not our training state: a released checkpoint, converted below
    if not path.exists():
        from img2img.weights.catalog import resolve_weights

        path = Path(resolve_weights(source))
    from img2img.weights.convert import convert_file

    sd, card = convert_file(path)
    if card.networks:  # a bundle: the named network's own tensors (the main one for any other name)
        from img2img.weights.format import split_bundle

        parts = split_bundle(card, sd)
        if net_name in card.networks:
            return parts[net_name], card.networks[net_name]["arch"], f"{path} (bundle network {net_name})"
        return parts[""], card.arch, str(path)
    return sd, card.arch, str(path)


def _from_state(state: dict[str, Any], net_name: str, path: Path) -> tuple[dict, str | None, str]:
    if net_name in state.get("ema", {}):
        return state["ema"][net_name], None, f"{path} (EMA {net_name}, step {state['step']})"
    if net_name in state["networks"]:
        return state["networks"][net_name], None, f"{path} ({net_name}, step {state['step']})"
    raise WeightsError(f"{path}: checkpoint has no network {net_name!r} (it has {sorted(state['networks'])})")


def load_into(net: nn.Module, sd: dict[str, torch.Tensor], arch: str | None, what: str, key: str) -> None:
    """Strict load with a message naming the config key, the source and the mismatch."""
    own_arch = type(net).__name__
    if arch is not None and arch != own_arch:
        raise WeightsError(f"{key}: {what} holds a {arch}, but this network is a {own_arch}")
    from img2img.weights.format import fit_problems

    own = net.state_dict()
    problem = fit_problems(own, sd, own_arch)
    if problem:
        raise WeightsError(
            f"{key}: {what} does not fit {own_arch} as configured: {problem}; make the model section match it"
        )
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


RUN_PRODUCTS = ("checkpoints", "weights", "samples", "tb", "stats.jsonl")  # what a run writes in out_dir


def earlier_run(out_dir: str | Path) -> list[str]:
    """What an earlier run left in `out_dir` (checkpoints, weights, samples, logs, stats), by name; [] = none."""
    found = []
    for name in RUN_PRODUCTS:
        p = Path(out_dir) / name
        if (p.is_dir() and any(p.iterdir())) or (p.is_file() and p.stat().st_size > 0):
            found.append(name)
    return found


def refuse_earlier_run(out_dir: str | Path, resume: str | None, overwrite: bool) -> None:
    """Starting afresh (resume off) in a folder holding an earlier run would delete its checkpoints, replace
    its weights and append to its stats: refuse, unless `overwrite`."""
    if resume or overwrite:
        return
    found = earlier_run(out_dir)
    if found:
        raise ConfigError(
            f"train.out_dir: {out_dir} holds an earlier run ({', '.join(found)}); continue it with "
            "train.resume=auto, start afresh in a new train.out_dir=..., or replace it with train.overwrite=true"
        )


def clear_earlier_run(out_dir: str | Path) -> None:
    """Remove what an earlier run wrote in `out_dir` (train.overwrite: the new run starts clean)."""
    import shutil

    for name in RUN_PRODUCTS:
        p = Path(out_dir) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def remove_temp_files(out_dir: str | Path) -> None:
    """Drop temp files a killed save left behind (they are never read)."""
    folder = ckpt_dir(out_dir)
    if folder.is_dir():
        for p in folder.glob("*.tmp"):
            p.unlink(missing_ok=True)


# ---------------------------------------------------------------- export


def export_weights(
    state: dict[str, Any],
    name: str,
    out_dir: str | Path,
    *,
    use_ema: bool = True,
    source: str = "",
    half: bool = False,
    overwrite: bool = True,
) -> list[Path]:
    """Write each user-facing network of a training state as `name.safetensors` + card (or
    `name_NET.safetensors` when the recipe ships several, e.g. CycleGAN's two generators). A card
    with `networks` makes a bundle: each entry names a trained network (`from`) or brings its own
    tensors (`state_dict`, e.g. a frozen pretrained text encoder), stored under `NAME.`.
    `half` stores floating-point tensors as float16 (half the file; loading computes in float32). Without
    `overwrite`, existing files are refused (OutputExistsError) before any is written."""
    from img2img.recipes import RECIPES
    from img2img.train.config import from_dict
    from img2img.train.log import training_time
    from img2img.weights.format import Card, save_weights

    cfg = from_dict(state["config"])
    recipe = RECIPES[cfg.recipe](cfg.spec, seed=cfg.train.seed)
    recipe.load_state_dict(state.get("recipe", {}))
    shipped = {n: recipe.export_card(n) for n in state["networks"]}
    shipped = {n: c for n, c in shipped.items() if c is not None}
    if not shipped:
        raise WeightsError(f"recipe {cfg.recipe} exports no network from {sorted(state['networks'])}")
    if not overwrite:
        from img2img.io.fileio import refuse_existing
        from img2img.weights.format import card_path

        stems = [name if len(shipped) == 1 else f"{name}_{net}" for net in shipped]
        targets = [Path(out_dir) / f"{stem}.safetensors" for stem in stems]
        refuse_existing([p for t in targets for p in (t, card_path(t))], overwrite=False)
    written = []
    for net, info in shipped.items():
        ema = use_ema and net in state.get("ema", {})
        sd = state["ema"][net] if ema else state["networks"][net]
        bad = all_finite({net: sd})
        if bad:
            raise WeightsError(f"refusing to export: {bad} is not finite")
        stem = name if len(shipped) == 1 else f"{name}_{net}"
        sd = _with_bundle(sd, info, state, use_ema)
        if half:
            sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
        metrics = dict(state.get("metrics", {}))
        protocol = info.pop("metrics_protocol", None)
        if metrics and protocol:
            metrics["protocol"] = protocol
        timing = training_time(Path(source).parent.parent / "stats.jsonl", int(state["step"])) if source else None
        training = {
            **(timing or {}),
            "recipe": cfg.recipe,
            "network": net,
            "ema": ema,
            "steps": int(state["step"]),
            "data": recipe.data_description(),
            "config": cfg.to_dict(),
            "checkpoint": source,
            "stored_dtype": "float16" if half else "float32",
            "amp": state.get("amp", cfg.train.amp),  # the autocast the last run ran with
            **info.pop("training", {}),
        }
        card = Card(
            name=stem,
            source=info.pop("source", "trained by img2img"),
            description=info.pop("description", f"{cfg.recipe} {net}, {state['step']} steps"),
            training=training,
            metrics=metrics,
            **info,
        )
        from img2img.weights.probe import record_precision

        card = record_precision(sd, card)  # bf16 fidelity, for --precision auto
        written.append(save_weights(Path(out_dir) / f"{stem}.safetensors", sd, card))
    return written


def _with_bundle(sd: dict[str, torch.Tensor], info: dict[str, Any], state: dict[str, Any], use_ema: bool) -> dict:
    """`sd` plus the other networks of a bundle card (their tensors under `NAME.`); `info["networks"]`
    keeps only what the card records (arch, arch_kwargs)."""
    from img2img.weights.format import bundle_state_dict

    others = {}
    for key, spec in dict(info.get("networks", {})).items():
        spec = dict(spec)
        tensors = spec.pop("state_dict", None)
        source = spec.pop("from", None)
        if tensors is None:
            if source not in state["networks"]:
                raise WeightsError(f"bundle network {key}: no trained network {source!r} in the checkpoint")
            ema = use_ema and source in state.get("ema", {})
            tensors = state["ema"][source] if ema else state["networks"][source]
        others[key] = tensors
        info["networks"][key] = spec
    return bundle_state_dict(sd, **others) if others else sd
