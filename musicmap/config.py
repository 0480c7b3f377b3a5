"""Configuration: conf/default.yaml holds every key; other YAML files and --set overrides change
a subset of them. Unknown keys are rejected with the closest valid key.

    cfg = load_config("conf/demo.yaml", overrides=["train.epochs=3"], root="s3://b/mm")
    cfg.train.epochs            # 3
    cfg.to_dict()               # plain nested dict (for manifests)
"""
from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from musicmap.errors import MusicMapError


class ConfigError(MusicMapError):
    """A config file or override that names an unknown key or gives a value of the wrong type."""


class Config:
    """Read-only view of a nested config dict with attribute access (cfg.train.lr)."""

    def __init__(self, data: dict, prefix: str = ""):
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(f"no config key '{self._prefix}{name}'") from None
        return Config(value, f"{self._prefix}{name}.") if isinstance(value, dict) else value

    __getitem__ = __getattr__

    def __setattr__(self, name, value):
        raise AttributeError("Config is read-only; use load_config(overrides=...)")

    def to_dict(self) -> dict:
        import copy
        return copy.deepcopy(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


def default_yaml_text() -> str:
    return resources.files("musicmap.conf").joinpath("default.yaml").read_text()


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _check_type(key: str, default: Any, value: Any, source: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{source}: '{key}' must be {type(default).__name__}, got {value!r}")
    return value


def _set(data: dict, defaults_flat: dict, key: str, value: Any, source: str) -> None:
    if key not in defaults_flat:
        sections = {k.rsplit(".", 1)[0] for k in defaults_flat if "." in k}
        if key in sections:
            raise ConfigError(f"{source}: '{key}' is a section; set one of its keys, e.g. "
                              f"'{next(k for k in defaults_flat if k.startswith(key + '.'))}'")
        close = difflib.get_close_matches(key, list(defaults_flat), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{source}: unknown config key '{key}'{hint}")
    value = _check_type(key, defaults_flat[key], value, source)
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                root: str | None = None) -> Config:
    """Defaults, then the YAML file at `path` (if any), then `overrides` ("a.b=value", value
    parsed as YAML), then `root` for storage.root."""
    data = yaml.safe_load(default_yaml_text())
    defaults_flat = _flatten(data)
    if path:
        text = Path(path).read_text()
        user = yaml.safe_load(text) or {}
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of sections")
        for key, value in _flatten(user).items():
            _set(data, defaults_flat, key, value, str(path))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
        key, raw = item.split("=", 1)
        _set(data, defaults_flat, key.strip(), yaml.safe_load(raw) if raw.strip() else None,
             f"--set {item}")
    if root:
        data["storage"]["root"] = root
    return Config(data)


