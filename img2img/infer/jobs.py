"""Jobs for the batch runner beyond one image file each: label maps matched by stem with their instance
maps and style images (synthesize), and prompt lists (generate). Every kind runs through the same
`batch.run_jobs`: conflicts, skip/overwrite, per-job failures, exit codes and torchrun sharding."""

from __future__ import annotations

import re
from pathlib import Path

from img2img.errors import ConfigError
from img2img.infer.batch import _EXPLICIT, BatchOptions, Job, _collect, render_name, validate_inputs
from img2img.io.files import scene_key


def match_by_stem(folder: Path, stem: str, what: str) -> Path:
    """The one image file in `folder` for a label map's `stem` (same stem or same scene key)."""
    from img2img.io.images import is_image_path

    if not folder.is_dir():
        raise ConfigError(f"{what} folder not found: {folder}")
    key = scene_key(stem)
    found = sorted(p for p in folder.iterdir() if is_image_path(p) and (p.stem == stem or scene_key(p.stem) == key))
    exact = [p for p in found if p.stem == stem]
    if len(exact) == 1 or len(found) == 1:
        return (exact or found)[0]
    if not found:
        raise ConfigError(f"no {what} for {stem} in {folder} (looked for {stem}.* and {key}_*)")
    raise ConfigError(f"several {what} files match {stem} in {folder}: {', '.join(p.name for p in found[:4])}")


def label_jobs(
    opts: BatchOptions, *, instances: Path | None = None, style: Path | None = None, samples: int = 1, seed: int = 0
) -> tuple[list[Job], list[str]]:
    """A job per label map (and per sample, each with its own seed): its instance map from `instances`
    and its style image from `style` (one file for all, or a folder matched by stem). A missing partner
    fails that job, not the run."""
    if samples < 1:
        raise ConfigError(f"-n must be at least 1, not {samples}")
    if instances is not None and not instances.is_dir():
        raise ConfigError(f"--instances {instances}: not a folder")
    if style is not None and not style.exists():
        raise ConfigError(f"--style {style}: not found")
    pairs, notes = _collect(opts)
    jobs = []
    for src, dst in pairs:
        inputs, values = {"labels": src}, {}
        for role, where in (("instances", instances), ("style", style)):
            if where is None:
                continue
            if where.is_file():
                inputs[role] = where
                continue
            try:
                inputs[role] = match_by_stem(where, src.stem, role[:-1] if role == "instances" else "style image")
            except ConfigError as e:
                values["missing"] = str(e)
        for k in range(samples):
            out = dst if samples == 1 and "{seed}" not in opts.name_template else dst.with_name(
                render_name(opts, src.stem, dst.suffix, seed=seed + k, sample=k, index=len(jobs))
            )  # fmt: skip
            jobs.append(Job(src, out, dict(inputs), {**values, "seed": seed + k, "sample": k}))
    return jobs, notes


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of a prompt: lower-case words joined by '-'."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = "-".join(words)[:limit].rstrip("-")
    return out or "prompt"


def read_prompts(path: Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file of prompts (one per line)") from None
    except OSError as e:
        raise ConfigError(f"cannot read the prompt file {path} ({e.strerror or e})") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ConfigError(f"{path}: no prompts (one per line; '#' starts a comment)")
    return prompts


def prompt_jobs(opts: BatchOptions, prompts: list[str], *, samples: int = 1, seed: int = 0) -> list[Job]:
    """A job per (prompt, sample) into the output folder: sample k of every prompt uses seed + k.
    Names come from the template ({index} {prompt} {sample} {seed}; default `{index:03d}_{prompt}_{sample}`)."""
    if samples < 1:
        raise ConfigError(f"-n must be at least 1, not {samples}")
    if not prompts:
        raise ConfigError("no prompts given: use --text or --prompts FILE")
    validate_inputs(opts, need_inputs=False)
    out = Path(opts.output)
    suffix = ".png" if opts.ext == "auto" else _EXPLICIT[opts.ext]
    jobs = []
    for i, prompt in enumerate(prompts):
        for k in range(samples):
            values = {"index": i, "prompt": slug(prompt), "sample": k, "seed": seed + k}
            name = render_name(opts, f"{i:03d}", suffix, **values)
            jobs.append(Job(f"prompt {i} ({prompt[:40]!r})", out / name, {}, {**values, "text": prompt}))
    return jobs
