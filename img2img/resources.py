"""Where the files that ship with the package are, the same for a source checkout, an editable install
and a wheel: bundled demo weights (repo `weights/`, installed as `img2img.bundled`) and the configs
(repo `configs/`, installed as `img2img.configs`)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from img2img.errors import ConfigError

_REPO = Path(__file__).resolve().parent.parent


def _package_dir(package: str, repo_folder: str) -> Path:
    # A source checkout without installing: the repo folder; installed: wherever the package maps it.
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if Path(location).is_dir():
                return Path(location)
    return _REPO / repo_folder


def home_dir() -> Path:
    """`$IMG2IMG_HOME`, else `~/.cache/img2img`: the weights cache, the ONNX exports and the compiled code."""
    home = os.environ.get("IMG2IMG_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "img2img"


def bundled_weights_dir() -> Path:
    """The folder of the demo weights that ship with img2img."""
    return _package_dir("img2img.bundled", "weights")


def configs_dir() -> Path:
    """The folder of the shipped configs (`<family>/<name>.yaml`)."""
    return _package_dir("img2img.configs", "configs")


def config_path(name_or_path: str | Path) -> Path:
    """A config file by path, or a shipped one by `family/name` (with or without `.yaml`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    rel = Path(str(name_or_path).removeprefix("configs/"))
    shipped = configs_dir() / (rel if rel.suffix else rel.with_suffix(".yaml"))
    if shipped.is_file():
        return shipped
    known = sorted(str(p.relative_to(configs_dir()).with_suffix("")) for p in configs_dir().glob("*/*.yaml"))
    raise ConfigError(f"config file not found: {name_or_path}; shipped configs: {', '.join(known)}")
