"""Folder-to-folder batch runs shared by `upscale`, `translate` and `synthesize`: job collection with
mirrored trees and name templates, per-file failure isolation, no silent overwrites, and sharding of
the sorted job list by `torchrun` rank (each rank takes `jobs[rank::world]`)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from img2img.errors import ConfigError, ImageError, Img2ImgError

if TYPE_CHECKING:
    from img2img.io.images import LoadedImage

EXT_CHOICES = ("auto", "png", "jpg", "webp", "tif")
_EXPLICIT = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tif": ".tif", "tiff": ".tif"}
_WRITABLE = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
_HOLDS_ALPHA = {".png", ".webp", ".tif", ".tiff"}
_HOLDS_16BIT = {".png", ".tif", ".tiff"}
EXISTS_REASON = "exists; use --overwrite or --skip-existing"


@dataclass
class BatchOptions:
    inputs: list[Path]  # image files and/or folders
    output: Path  # folder (or a file path when the only input is one file)
    recursive: bool = False  # walk subfolders and mirror the tree under `output`
    name_template: str = "{name}"  # fields: {name} {ext} {scale} {model} (+ template_fields)
    ext: str = "auto"  # auto | png | jpg | webp | tif
    overwrite: bool = False
    skip_existing: bool = False
    quality: int = 95  # JPEG/WebP quality
    animated: str = "error"  # error | first (frame of an animated input)
    max_pixels: int | None = None  # refuse to decode larger inputs
    template_fields: dict[str, Any] = field(default_factory=dict)  # e.g. {"scale": 4, "model": "x"}
    job_fields: dict[str, Any] = field(default_factory=dict)  # per-job fields ({seed}, ...) with example values


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)  # written outputs
    skipped: list[tuple[Path | str, str]] = field(default_factory=list)  # (source, reason)
    failed: list[tuple[Path | str, str]] = field(default_factory=list)  # (source, reason)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 1 if any file failed, else 0."""
        return 130 if self.interrupted else (1 if self.failed else 0)


def progress_enabled(progress: bool | str) -> bool:
    """True = on when stderr is a terminal, "always" = forced on, False = off."""
    if progress == "always":
        return True
    return bool(progress) and sys.stderr.isatty()


def validate_inputs(opts: BatchOptions, *, need_inputs: bool = True) -> None:
    """Usage errors found before any work (missing inputs, bad options): raise ConfigError."""
    if need_inputs and not opts.inputs:
        raise ConfigError("no input given: pass image files and/or folders before the output folder")
    for p in opts.inputs:
        if not Path(p).exists():
            raise ConfigError(f"input not found: {p}")
    if opts.ext not in EXT_CHOICES and opts.ext not in _EXPLICIT:
        raise ConfigError(f"--ext must be one of {', '.join(EXT_CHOICES)}, not {opts.ext!r}")
    if opts.overwrite and opts.skip_existing:
        raise ConfigError("--overwrite and --skip-existing exclude each other; pick one")
    if opts.animated not in ("error", "first"):
        raise ConfigError(f"--animated must be 'error' or 'first', not {opts.animated!r}")
    if opts.max_pixels is not None and opts.max_pixels <= 0:
        raise ConfigError(f"--max-pixels must be positive, not {opts.max_pixels}")
    if not 1 <= opts.quality <= 100:
        raise ConfigError(f"--quality must be in 1..100, not {opts.quality}")
    out = Path(opts.output)
    if out.exists() and not out.is_dir() and not _single_file_output(opts):
        raise ConfigError(f"output {out} is an existing file; give a folder")
    render_name(opts, "check", ".png", **opts.job_fields)  # template errors surface now, not per file


def _single_file_output(opts: BatchOptions) -> bool:
    from img2img.io.images import is_image_path

    out = Path(opts.output)
    one_file = len(opts.inputs) == 1 and Path(opts.inputs[0]).is_file()
    return one_file and not out.is_dir() and is_image_path(out)


def render_name(opts: BatchOptions, stem: str, suffix: str, **values: Any) -> str:
    """The output file name from `opts.name_template`: {name} {ext} {scale} {model}, the command's
    template fields and per-job `values` ({index} {seed} {sample} {prompt}: ints keep format specs)."""
    fields: dict[str, Any] = {"name": stem, "ext": suffix.lstrip("."), "scale": "", "model": ""}
    for k, v in {**opts.template_fields, **values}.items():
        fields[k] = f"{v:g}" if isinstance(v, float) else v if isinstance(v, int) else str(v)
    try:
        name = opts.name_template.format(**fields)
    except KeyError as e:
        known = ", ".join("{" + k + "}" for k in fields)
        raise ConfigError(f"unknown field {{{e.args[0]}}} in --name {opts.name_template!r}; use {known}") from e
    except (ValueError, IndexError) as e:
        raise ConfigError(f"bad --name template {opts.name_template!r}: {e}") from e
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"--name {opts.name_template!r} must give a plain file name, got {name!r}")
    # "{name}.{ext}" already carries the extension; otherwise append it.
    return name if name.lower().endswith(suffix.lower()) else name + suffix


def _out_suffix(opts: BatchOptions, src: Path) -> str:
    if opts.ext != "auto":
        return _EXPLICIT[opts.ext]
    return src.suffix if src.suffix.lower() in _WRITABLE else ".png"  # gif, ppm, ... -> png


def _collect(opts: BatchOptions) -> tuple[list[tuple[Path, Path]], list[str]]:
    from img2img.io.images import is_image_path

    validate_inputs(opts)
    out = Path(opts.output)
    if _single_file_output(opts):
        src = Path(opts.inputs[0])
        if opts.ext != "auto" and _EXPLICIT[opts.ext] != _EXPLICIT.get(out.suffix.lower()[1:]):
            raise ConfigError(f"--ext {opts.ext} contradicts the output file name {out.name}")
        return [(src, out)], []
    out_resolved = out.resolve()
    jobs: list[tuple[Path, Path]] = []
    notes: list[str] = []
    for inp in map(Path, opts.inputs):
        if inp.is_file():
            if is_image_path(inp):
                jobs.append((inp, out / render_name(opts, inp.stem, _out_suffix(opts, inp), **opts.job_fields)))
            else:
                notes.append(f"skipped {inp}: not a supported image type")
            continue
        files, ignored, subdirs = _walk(inp, opts.recursive, out_resolved, is_image_path)
        for f in files:
            rel = f.relative_to(inp)
            dst = out / rel.parent / render_name(opts, f.stem, _out_suffix(opts, f), **opts.job_fields)
            jobs.append((f, dst))
        if ignored:
            shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
            notes.append(f"skipped {len(ignored)} non-image or hidden file(s) in {inp}: {shown}")
        if subdirs:
            notes.append(f"ignored {subdirs} subfolder(s) of {inp}; use --recursive to include them")
    jobs.sort(key=lambda j: (str(j[0]), str(j[1])))
    return jobs, notes


def _walk(
    root: Path, recursive: bool, out_resolved: Path, is_image: Callable[[Path], bool]
) -> tuple[list[Path], list[str], int]:
    """Image files under `root` (sorted), names of skipped files, count of ignored subfolders."""
    files: list[Path] = []
    ignored: list[str] = []
    subdirs = 0
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        # Hidden folders and the output folder (when it sits inside the input) are never read.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() != out_resolved)
        if not recursive:
            subdirs = len(dirnames)
            dirnames[:] = []
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or not is_image(path):
                ignored.append(str(path.relative_to(root)))
            else:
                files.append(path)
    return files, ignored, subdirs


def collect_jobs(opts: BatchOptions) -> list[tuple[Path, Path]]:
    """All (source, destination) pairs, sorted by source: the same list on every rank."""
    return _collect(opts)[0]


def _key(p: Path) -> str:
    return os.path.normcase(os.path.abspath(p))


@dataclass
class Job:
    """One output of a batch run: what it is reported under (`source`: the main input file, or a
    prompt's label), where it goes, and its input files by role (`image`; `labels`, `instances`,
    `style`; none for prompts) plus per-job values (prompt text, seed, sample) for `process`."""

    source: Path | str
    dst: Path
    inputs: dict[str, Path] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


def _conflicts(jobs: list[Job]) -> dict[int, str]:
    """Jobs (by position) whose destination is already taken by an earlier job or is an input itself."""
    sources = {_key(p) for j in jobs for p in j.inputs.values()}
    first: dict[str, Path | str] = {}
    bad: dict[int, str] = {}
    for i, job in enumerate(jobs):
        k = _key(job.dst)
        if k in sources:
            bad[i] = f"output {job.dst} would overwrite an input; choose another output folder or --name"
        elif k in first:
            bad[i] = f"output {job.dst} is also the output of {first[k]}; use --name or --ext to tell them apart"
        else:
            first[k] = job.source
    return bad


def run_batch(
    opts: BatchOptions,
    process: Callable[[LoadedImage], tuple[np.ndarray, dict]],
    *,
    rank: int = 0,
    world: int = 1,
    progress: bool | str = True,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Run `process` on this rank's share of the image files; every file succeeds, skips or fails on its own.

    `process` gets a LoadedImage and returns (HxWxC float32 in [0, 1] or uint8 / uint16 samples, C = 1|2|3|4
    with alpha last; info dict whose optional "notes" list is reported). `log` receives status messages (Ctrl-C).
    """
    from img2img.io.images import read_image

    pairs, notes = _collect(opts)
    jobs = [Job(src, dst, {"image": src}) for src, dst in pairs]

    def run(job: Job) -> tuple[np.ndarray, dict]:
        img = read_image(job.inputs["image"], max_pixels=opts.max_pixels, animated=opts.animated)
        out, info = process(img)
        notes = list(img.warnings) + list(info.get("notes", []))
        return out, {**info, "notes": notes, "bit_depth": img.bit_depth, "icc_profile": img.icc_profile}

    return run_jobs(opts, jobs, run, notes=notes, rank=rank, world=world, progress=progress, log=log)


def run_jobs(
    opts: BatchOptions,
    jobs: list[Job],
    process: Callable[[Job], tuple[np.ndarray, dict]],
    *,
    notes: list[str] | None = None,
    rank: int = 0,
    world: int = 1,
    progress: bool | str = True,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """The batch engine every command shares: this rank's share of `jobs` (the same sorted list on every
    rank, `jobs[rank::world]`), destination conflicts and existing outputs refused per job, each job's
    failure reported and the run going on, Ctrl-C stopping after the current job. `process(job)` returns
    (HxWxC float32 in [0, 1], info); info may carry "notes", "bit_depth" (8|16) and "icc_profile"."""
    from tqdm import tqdm

    start = time.perf_counter()
    report = BatchReport(notes=list(notes or []) if rank == 0 else [])
    conflicts = _conflicts(jobs)
    planned = {_key(j.dst) for j in jobs}
    mine = list(enumerate(jobs))[rank::world]
    bar = tqdm(
        total=len(mine),
        desc=f"rank {rank}" if world > 1 else "images",
        unit="img",
        file=sys.stderr,
        disable=not progress_enabled(progress),
        dynamic_ncols=True,
    )
    stop = _StopFlag(log)
    try:
        with stop:
            for n, (i, job) in enumerate(mine):
                if stop.requested:
                    report.interrupted = True
                    report.notes.append(f"stopped by Ctrl-C: {len(mine) - n} file(s) not processed")
                    break
                _run_one(opts, process, job, conflicts.get(i), planned, report)
                bar.update(1)
                bar.set_postfix(failed=len(report.failed), refresh=False)
    except KeyboardInterrupt:  # second Ctrl-C: abandon the current file (writes are atomic)
        report.interrupted = True
        report.notes.append("aborted by Ctrl-C during a file; no partial output was written")
    finally:
        bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _run_one(
    opts: BatchOptions,
    process: Callable[[Job], tuple[np.ndarray, dict]],
    job: Job,
    conflict: str | None,
    planned: set[str],
    report: BatchReport,
) -> None:
    from img2img.io.images import write_image

    src, dst = job.source, job.dst
    if conflict:
        report.failed.append((src, conflict))
        return
    if _refuse_existing(opts, src, dst, report):
        return
    try:
        out, info = process(job)
        rgb, alpha = _split_alpha(out)
        bits = int(info.get("bit_depth", 8))
        final, bit_depth, more = _final_destination(opts, dst, bits, alpha is not None)
        report.notes += [f"{src}: {n}" for n in list(info.get("notes", [])) + more]
        if final != dst:  # switched format: the new name must be free as well
            if _key(final) in planned:
                report.failed.append((src, f"output {final} is also the output of another input"))
                return
            if _refuse_existing(opts, src, final, report):
                return
        final.parent.mkdir(parents=True, exist_ok=True)
        icc = info.get("icc_profile")
        write_image(final, rgb, alpha, bit_depth=bit_depth, quality=opts.quality, icc_profile=icc)
        report.done.append(final)
    except (Img2ImgError, OSError, MemoryError) as e:
        report.failed.append((src, _reason(e, src)))
    except RuntimeError as e:
        if "out of memory" not in str(e).lower():
            raise  # a bug, not a property of this file: show the traceback
        report.failed.append((src, f"out of memory ({e}); try a smaller --tile or --device cpu"))


def _refuse_existing(opts: BatchOptions, src: Path | str, dst: Path, report: BatchReport) -> bool:
    if opts.overwrite or not dst.exists():
        return False
    if opts.skip_existing:
        report.skipped.append((src, f"{dst} exists"))
    else:
        report.failed.append((src, f"{dst} {EXISTS_REASON}"))
    return True


def _reason(e: BaseException, src: Path | str) -> str:
    if isinstance(e, OSError):
        from img2img.io.fileio import describe_os_error

        return describe_os_error(e)
    text = str(e).removeprefix(f"{src}: ")  # the table already names the file
    return text if isinstance(e, Img2ImgError) else f"{type(e).__name__}: {text}"


def _split_alpha(out: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if out.ndim != 3 or out.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"processing returned an array of shape {out.shape}; expected HxWxC, C in 1..4")
    if out.shape[2] in (2, 4):
        return out[..., :-1], out[..., -1]
    return out, None


def _final_destination(opts: BatchOptions, dst: Path, bit_depth: int, has_alpha: bool) -> tuple[Path, int, list[str]]:
    """Where and at what bit depth the result can be stored without losing alpha or precision."""
    notes: list[str] = []
    suffix = dst.suffix.lower()
    cannot_hold = (has_alpha and suffix not in _HOLDS_ALPHA) or (bit_depth == 16 and suffix not in _HOLDS_16BIT)
    if cannot_hold and opts.ext == "auto" and not _single_file_output(opts):  # a named output file keeps its format
        what = "alpha" if has_alpha and suffix not in _HOLDS_ALPHA else "16-bit samples"
        dst = dst.with_suffix(".png")
        notes.append(f"saved as {dst.name}: {suffix} cannot hold {what}")
        suffix = ".png"
    if has_alpha and suffix not in _HOLDS_ALPHA:
        raise ImageError(
            f"the result has an alpha channel, which {suffix} cannot store; "
            "use --ext png (or drop alpha with --alpha none)"
        )
    if bit_depth == 16 and suffix not in _HOLDS_16BIT:
        notes.append(f"saved as 8-bit: {suffix} cannot hold 16-bit samples (use --ext png or tif)")
        bit_depth = 8
    return dst, bit_depth, notes


class _StopFlag:
    """First Ctrl-C asks to stop after the current file; a second one interrupts at once."""

    def __init__(self, log: Callable[[str], None] | None) -> None:
        self.requested = False
        self._log = log
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._log:
            self._log("Ctrl-C: stopping after the current file (press again to abort it)")

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def report_lines(report: BatchReport, *, rank: int = 0, world: int = 1, quiet: bool = False) -> list[str]:
    """Notes (unless quiet) and the failure table (file -> reason), for stderr."""
    tag = f" [rank {rank}/{world}]" if world > 1 else ""
    lines = [] if quiet else [f"note{tag}: {n}" for n in report.notes]
    if report.failed:
        width = min(60, max(len(str(p)) for p, _ in report.failed))
        lines.append(f"{len(report.failed)} file(s) failed{tag}:")
        lines.append(f"  {'file':<{width}}  reason")
        lines += [f"  {str(p):<{width}}  {r}" for p, r in report.failed]
    return lines


def summary_line(report: BatchReport, output: Path, *, rank: int = 0, world: int = 1) -> str:
    tag = f" [rank {rank}/{world}]" if world > 1 else ""
    stopped = " (interrupted)" if report.interrupted else ""
    return (
        f"{len(report.done)} done, {len(report.skipped)} skipped, {len(report.failed)} failed "
        f"in {report.seconds:.1f} s -> {output}{tag}{stopped}"
    )
