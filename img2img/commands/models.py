"""`img2img models`: the weights available by name (released, bundled, cached), as a table or JSON."""

from __future__ import annotations

import argparse
import json

HELP = "list the weights you can use by name (released, bundled and cached)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="only this task (upscale, translate, synthesize, generate)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from img2img.weights.catalog import list_weights

    found = list_weights()
    rows = [w for w in found if not w.broken and (not args.task or w.task == args.task)]
    broken = [w for w in found if w.broken]
    if args.json:
        data = [{**vars(w), "path": str(w.path) if w.path else None} for w in rows + broken]
        print(json.dumps(data, indent=2))
        return 0
    if not rows:
        print(f"no weights for task {args.task!r}" if args.task else "no weights found")
        _print_broken(broken)
        return 0
    header = ("name", "task", "scale", "arch", "params", "size", "source", "cached")
    table = [
        (
            w.name,
            w.task,
            f"x{w.scale}" if w.task in ("upscale", "translate") else "-",  # label and text models make a new image
            w.arch,
            f"{w.params / 1e6:.2f} M",
            f"{w.size_mb:.1f} MB",
            w.source if len(w.source) <= 40 else w.source[:37] + "...",
            "yes" if w.cached else "no",
        )
        for w in rows
    ]
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]
    for r in (header, *table):
        print("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())
    _print_broken(broken)
    return 0


def _print_broken(broken: list) -> None:
    """Files in the weights folders that cannot be used, each with the reason (the rest still works)."""
    if broken:
        print(f"\nbroken ({len(broken)}, not loadable):")
        for w in broken:
            print(f"  {w.name}  {w.path}: {w.broken}")
