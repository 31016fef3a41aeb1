"""A non-editable install (a wheel in a fresh virtual environment) still has the bundled demo weights,
their cards and the shipped configs: they install inside the package, not beside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_finds_bundled_weights_and_configs(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir)]
    subprocess.run([*build, str(REPO)], check=True, timeout=300)
    (wheel,) = wheel_dir.glob("img2img-*.whl")
    venv = tmp_path / "venv"
    # System site-packages provide torch & co.; the wheel itself is installed without dependencies.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    probe = (
        "import img2img, json; from img2img.resources import bundled_weights_dir, config_path;"
        "from img2img.weights.catalog import list_weights;"
        "names = sorted(i.name for i in list_weights());"
        "config = str(config_path('esrgan/finetune_x4'));"
        "print(json.dumps([img2img.__file__, str(bundled_weights_dir()), config, names]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    out = subprocess.run(
        [py, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    import json

    where, bundled, config, names = json.loads(out.stdout)
    assert str(REPO) not in where and "site-packages" in where  # the installed copy, not the checkout
    assert "site-packages" in bundled and "site-packages" in config
    shipped = {p.stem for p in (REPO / "weights").glob("*.safetensors")}
    assert shipped and shipped <= set(names), f"bundled weights missing from the wheel: {sorted(shipped - set(names))}"


def test_every_package_is_listed_for_the_wheel() -> None:
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "img2img").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
