"""Typed configs: YAML -> dataclasses. Unknown keys fail with the full key path and a suggestion, wrong
types and bad values fail with the path, and dotted overrides (`train.batch_size=8`) apply first. Recipes
declare their sections with these; the engine's own section and a whole run live in `train.config`."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

import yaml

from img2img.errors import ConfigError


def num(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A dataclass field with bounds checked at load time."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le})


class ArchSpec(dict):
    """A network in a config: `{arch: RRDBNet, nf: 64, nb: 23}`; keys other than `arch` are checked
    against the arch's keyword arguments, so `model.G.nb=4` overrides one of them."""

    @property
    def arch(self) -> str:
        return self["arch"]

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.items() if k != "arch"}

    def build(self) -> Any:
        from img2img.archs import build_arch

        return build_arch(self.arch, **self.kwargs)


# ---------------------------------------------------------------- typed parsing


def _suggest(key: str, known: Iterable[str], prefix: str) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {prefix}{close[0]}?"
    return "known keys: " + ", ".join(prefix + k for k in known)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def parse(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from plain YAML data, checking every key, type and bound."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            prefix = path + "." if path else ""
            raise ConfigError(f"{_join(path, str(key))}: unknown key; {_suggest(str(key), fields, prefix)}")
    values = {}
    for name, f in fields.items():
        p = _join(path, name)
        if name in data:
            values[name] = _check_bounds(f, _coerce(hints[name], data[name], p), p)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{p}: required key is missing")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path or 'config'}: {e}") from e


def _check_bounds(f: dataclasses.Field, value: Any, path: str) -> Any:
    m = f.metadata
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number, got {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if m.get("ge") is not None and value < m["ge"]:
            raise ConfigError(f"{path}: must be >= {m['ge']}, got {value}")
        if m.get("gt") is not None and value <= m["gt"]:
            raise ConfigError(f"{path}: must be > {m['gt']}, got {value}")
        if m.get("le") is not None and value > m["le"]:
            raise ConfigError(f"{path}: must be <= {m['le']}, got {value}")
    return value


def _coerce(tp: Any, value: Any, path: str) -> Any:  # noqa: C901 - one branch per supported type
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return _coerce(a, value, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {options}")
    if origin is Literal:
        if isinstance(value, bool) and ("off" if not value else "on") in args:
            value = "off" if not value else "on"  # YAML 1.1 reads a bare off / on as a boolean
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(str, args))}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, path)
    if tp is ArchSpec:
        return _arch_spec(value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        vt = args[1] if args else Any
        return {str(k): _coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        # YAML 1.1 reads `1e6` as a string; accept any integral number.
        if isinstance(value, str):
            value = _number(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str):
            value = _number(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        raise ConfigError(f"{path}: unsupported config type {tp}")
    raise ConfigError(f"{path}: expected {tp.__name__}, got {type(value).__name__} {value!r}")


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _arch_spec(value: Any, path: str) -> ArchSpec:
    from img2img.archs import ARCHS

    if not isinstance(value, Mapping) or "arch" not in value:
        raise ConfigError(f"{path}: expected a mapping with `arch:` and its arguments, got {value!r}")
    name = value["arch"]
    if name not in ARCHS:
        close = difflib.get_close_matches(str(name), list(ARCHS), n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(sorted(ARCHS))}"
        raise ConfigError(f"{path}.arch: unknown architecture {name!r}; {hint}")
    params = inspect.signature(ARCHS[name].__init__).parameters
    accepted = {k: p for k, p in params.items() if k != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}
    for key, v in value.items():
        if key == "arch":
            continue
        if key not in accepted:
            raise ConfigError(f"{path}.{key}: not an argument of {name}; {_suggest(key, accepted, path + '.')}")
        default = accepted[key].default
        if default is not inspect.Parameter.empty and default is not None and type(v) is not type(default):
            if not (isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool)):
                raise ConfigError(f"{path}.{key}: expected {type(default).__name__}, got {v!r}")
    return ArchSpec(value)


def to_dict(obj: Any) -> Any:
    """Plain YAML-safe containers (tuples become lists) from dataclasses and containers."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# ---------------------------------------------------------------- files and overrides


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.c=VALUE` strings (VALUE parsed as YAML) to nested plain data, in order."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.steps=100)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from e
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    except OSError as e:
        raise ConfigError(f"cannot read the config file {path} ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def arch_kwargs(spec: ArchSpec) -> dict[str, Any]:
    """The spec's kwargs completed with the arch's defaults (what a card must record)."""
    from img2img.archs import ARCHS

    params = inspect.signature(ARCHS[spec.arch].__init__).parameters
    full = {k: p.default for k, p in params.items() if k != "self" and p.default is not inspect.Parameter.empty}
    return {**full, **spec.kwargs}
