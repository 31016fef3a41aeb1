"""Writing outputs: never over an existing file unless the user asked (`--overwrite`), and atomically
(a temp file beside the target, flushed to disk, then renamed over it), so an interrupted write leaves the
old file or none, never half a file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from img2img.errors import OutputExistsError


def refuse_existing(paths: Iterable[str | os.PathLike], *, overwrite: bool, flag: str = "--overwrite") -> None:
    """Raise OutputExistsError naming the first of `paths` that exists, unless `overwrite`; a folder where a
    file should go is refused either way."""
    for p in map(Path, paths):
        if p.is_dir():
            raise OutputExistsError(f"{p} is a folder; give a file name")
        if p.exists() and not overwrite:
            raise OutputExistsError(f"{p} already exists; choose another name or pass {flag} to replace it")


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` to write to; on success it is flushed and renamed over `path`, on
    failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def describe_os_error(e: OSError) -> str:
    """An OSError as a sentence for a person (not `PermissionError: [Errno 13] ...`)."""
    where = f" {e.filename}" if e.filename else ""
    if isinstance(e, PermissionError):
        return f"permission denied for{where or ' a file'}: check its permissions, or choose another output folder"
    if isinstance(e, FileNotFoundError):
        return f"{where.strip() or 'a file'} does not exist (was it moved or deleted meanwhile?)"
    if isinstance(e, IsADirectoryError):
        return f"{where.strip() or 'the path'} is a folder, not a file"
    reason = (e.strerror or str(e) or type(e).__name__).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    return f"{reason}{' (' + where.strip() + ')' if where else ''}"
