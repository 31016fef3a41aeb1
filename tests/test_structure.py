"""The package layers of DESIGN.md hold: each group of modules imports only the groups below it (checked
on the source, top-level and function-level imports alike), module imports have no cycles, and the
modules users run for inference never import training code at module level."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # test_ci_turns_a_skip_for_missing_data_into_a_failure runs pytest itself

PKG = Path(__file__).resolve().parents[1] / "img2img"
TRAINING = {"train", "recipes", "data", "losses"}
# group -> the groups it may import (errors is everyone's; a group may import itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "layers": set(),
    "archs": {"layers"},
    "losses": {"layers", "archs"},
    "io": set(),
    "resources": set(),
    "devices": set(),
    "compiling": {"resources"},
    "text": {"archs"},
    "config": {"archs"},
    "weights": {"archs", "layers", "resources", "io", "devices"},
    "infer": {"weights", "io", "layers", "text", "devices", "resources", "compiling"},
    "eval": {"infer", "io", "weights"},
    "data": {"io", "text"},
    "recipes": {"archs", "losses", "data", "config", "layers", "eval", "io", "text"},
    "train": {"recipes", "data", "weights", "config", "layers", "archs", "io", "devices", "compiling"},
    "app": {"infer", "io", "weights", "text"},
    "commands": {"infer", "eval", "weights", "io", "config", "resources", "app", "text", "devices", *TRAINING},
    "cli": set(),
    "__main__": {"cli"},
    "": {"infer", "weights"},  # img2img/__init__.py: the public API
}
EAGER_LIGHT = {"commands", "app", "infer", "eval", "cli", ""}  # no training code at module level


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported img2img module, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "img2img":
            names = [f"{node.module}.{a.name}" if node.module == "img2img" else node.module for a in node.names]
            found += [(n, id(node) in top) for n in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names if a.name.split(".")[0] == "img2img"]
    return found


FILES = sorted(PKG.rglob("*.py"))


def test_every_group_is_declared() -> None:
    assert {group(module_name(f)) for f in FILES} <= set(ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_follow_the_layers(path: Path) -> None:
    mine = group(module_name(path))
    for target, eager in imports(path):
        theirs = group(target)
        if theirs in (mine, "errors", "__version__"):
            continue
        assert theirs in ALLOWED[mine], f"{module_name(path)} imports {target}: {mine or 'img2img'} -> {theirs}"
        if mine in EAGER_LIGHT and theirs in TRAINING:
            assert not eager, f"{module_name(path)} imports training code {target} at module level"


@pytest.mark.parametrize("path", sorted((PKG / "commands").glob("*.py")) + [PKG / "cli.py"], ids=lambda p: p.name)
def test_the_command_line_builds_without_heavy_imports(path: Path) -> None:
    """`img2img --help` imports every command module: at module level they use only errors and each other
    (torch, Gradio and the model code load inside `run`)."""
    for target, eager in imports(path):
        if eager:
            assert target.startswith(("img2img.errors", "img2img.commands", "img2img.__version__")), (
                f"{module_name(path)} imports {target} at module level; import it inside run()"
            )


def test_module_level_imports_have_no_cycles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    known = {module_name(f) for f in FILES}
    for f in FILES:
        for target, eager in imports(f):
            # `from img2img.x import name` may name a module or an attribute: keep the longest known module.
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if eager and target != module_name(f):
                graph[module_name(f)].add(target)
    # A package importing its own submodules is how packages work; a cycle through other modules is not.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if n.startswith(m + ".") or m.startswith(n + "."):
                continue
            if state.get(n) == 1:
                cycle = path[path.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_ci_turns_a_skip_for_missing_data_into_a_failure(pytester, monkeypatch) -> None:
    """CI always has the development data: there a test skipped for lack of it fails; other skips stay skips,
    and off CI both are skips."""
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        test_probe="""
import pytest

def test_needs_data():
    pytest.skip(reason="facades/val not found under /nowhere (set IMG2IMG_DATA)")

def test_needs_a_browser():
    pytest.skip(reason="needs Debian's chromium: apt-get install chromium")
"""
    )
    monkeypatch.setenv("CI", "true")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(failed=1, skipped=1)
    monkeypatch.delenv("CI")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(skipped=2)
