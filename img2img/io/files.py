"""Finding input files: image files in a folder, a sub-folder by name in any case, and files of several
folders matched by a key (A/B pairs, LR/HR pairs), with the unmatched ones named in the error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from img2img.errors import ConfigError


def image_files(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (and below it with `recursive`), sorted, hidden files left out."""
    from img2img.io.images import is_image_path

    root = Path(folder).expanduser()
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in found if p.is_file() and not p.name.startswith(".") and is_image_path(p))


def subfolder(root: str | Path, name: str) -> Path | None:
    """`root/name`, matched case-insensitively (HR/hr, trainA/traina); None when absent."""
    root = Path(root)
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if child.is_dir() and child.name.lower() == name.lower():
            return child
    return None


def match_files(
    folders: dict[str, list[Path] | Path], key: Callable[[Path, Path], str], *, what: str = "files", rule: str = ""
) -> dict[str, dict[str, Path]]:
    """{key: {role: file}} for files of every role that share a key (`key(file, its folder)`).

    `folders` maps a role ("A", "HR", ...) to its folder (all images below it) or to a file list whose
    folder is the first file's parent. Two files of one role with one key, or a key some role lacks, is
    a ConfigError naming examples and the matching `rule`."""
    by_role: dict[str, dict[str, Path]] = {}
    roots: dict[str, Path] = {}
    for role, where in folders.items():
        files = image_files(where, recursive=True) if isinstance(where, Path) else list(where)
        root = where if isinstance(where, Path) else (files[0].parent if files else Path("."))
        roots[role] = root
        found: dict[str, Path] = {}
        for p in files:
            k = key(p, root)
            if k in found:
                raise ConfigError(f"{role} folder {root}: {found[k].name} and {p.name} have the same name")
            found[k] = p
        by_role[role] = found
    common = set.intersection(*(set(f) for f in by_role.values())) if by_role else set()
    parts = []
    for role, found in by_role.items():
        alone = sorted(set(found) - common)
        if alone:
            other = "/".join(r for r in by_role if r != role)
            where = ", ".join(str(roots[r]) for r in by_role if r != role)
            article = "an" if other[:1] in "AEFHILMNORSX" else "a"  # letters said with a vowel first
            parts.append(
                f"{len(alone)} {role} file(s) in {roots[role]} without {article} {other} partner in {where} "
                f"(e.g. {alone[:5]})"
            )
    if parts:
        raise ConfigError(f"{what}: " + "; ".join(parts) + (f"; {rule}" if rule else ""))
    return {k: {role: by_role[role][k] for role in by_role} for k in sorted(common)}


# Label-map file stems end in one of these; the rest of the stem names the scene (Cityscapes and friends).
ROLE_SUFFIXES = ("_gtFine_labelIds", "_gtFine_instanceIds", "_labelIds", "_instanceIds", "_leftImg8bit",
                 "_label", "_labels", "_inst", "_instance", "_img", "_image")  # fmt: skip


def scene_key(stem: str) -> str:
    """`aachen_000000_000019_gtFine_labelIds` -> `aachen_000000_000019`; other stems as they are."""
    for suffix in ROLE_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem
