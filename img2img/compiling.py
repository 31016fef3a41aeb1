"""torch.compile for inference (the compile engine) and training (`train.compile`): inductor's
generated code cached in `$IMG2IMG_HOME/compile` so that a second process loads it instead of
generating it again. The first call for a new input size traces and compiles (seconds to minutes);
the compiled network gives the eager network's output (float rounding aside). When compiling fails at
inference, the network runs eagerly, and a note says why (`img2img.infer.model.Compiled`)."""

from __future__ import annotations

import os
from pathlib import Path

from img2img.errors import Img2ImgError

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # inductor's own: a user's setting wins


def compile_cache_dir() -> Path:
    """`$IMG2IMG_HOME/compile`, else `~/.cache/img2img/compile`: inductor's generated code and kernels."""
    from img2img.resources import home_dir

    return home_dir() / "compile"


def prepare() -> Path:
    """Before any work: point inductor's cache at ours unless the user chose one, find the C++ compiler
    it will use for CPU code, and check that the cache folder is writable. Clear errors otherwise."""
    # First, before importing inductor: it settles on its default folder the first time it is asked for one.
    path = Path(os.environ.get(CACHE_ENV) or compile_cache_dir())
    os.environ[CACHE_ENV] = str(path)
    from torch._inductor import exc
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        raise Img2ImgError(
            "the compile engine needs a C++ compiler for the CPU code torch.compile generates: install g++ "
            "(e.g. apt-get install g++) or set CXX, or use the torch engine"
        ) from None
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise Img2ImgError(
            f"cannot write the compiled code to {path} ({e.strerror or e}); point IMG2IMG_HOME (or "
            f"{CACHE_ENV}) at a writable folder, or use the torch engine"
        ) from None
    return path
