"""Configuration: conf/default.yaml holds every key; other YAML files and --set overrides change
a subset of them. Unknown keys are rejected with the closest valid key.

    cfg = load_config("conf/demo.yaml", overrides=["train.epochs=3"], root="s3://b/mm")
    cfg.train.epochs            # 3
    cfg.to_dict()               # plain nested dict (for manifests)
"""
from __future__ import annotations

import argparse
import copy
import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from musicmap import storage
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


# Allowed values of the keys that name a choice, and the ranges of the numbers, checked when a
# config loads (what each key means: conf/default.yaml). A typo fails here, with the closest
# valid value, not deep inside a stage.
CHOICES = {
    "train.device": ("auto", "cpu", "cuda"),
    "recommend.device": ("auto", "cpu", "cuda"),
    "recommend.method": ("auto", "ranker", "lightgcn"),
    "recommend.foldin": ("auto", "lightgcn", "mean", "optimized"),
    "recommend.graph_method": ("auto", "lightgcn", "rp3beta", "cooccurrence", "ease"),
    "recommend.playlists": ("train", "val", "test", "all", "none"),
    "evaluate.split": ("val", "test"),
}
POSITIVE = ["train.dist_timeout_s", "recommend.foldin_lr", "ranker.learning_rate",
            "synth.trend_days", "storage.retry_backoff_s"]
AT_LEAST_1 = ["train.batch_size", "train.negatives", "model.dim", "model.layers",
              "model.embed_min_playlists", "graph.min_playlists", "graph.min_tracks", "graph.rows_per_part",
              "recommend.k", "recommend.chunk", "recommend.foldin_negatives", "ranker.per_source", "ranker.rounds",
              "ranker.min_data_in_leaf", "ranker.chunk", "evaluate.k", "evaluate.k_small", "evaluate.chunk",
              "storage.retries", "storage.keep_versions", "synth.playlists", "synth.communities",
              "baselines.rp3beta_neighbours", "baselines.cooccurrence_neighbours", "map.neighbours", "tune.trials", "tune.nproc"]
NOT_NEGATIVE = ["evaluate.max_playlists", "train.epochs", "train.max_minutes", "train.max_steps", "train.lr", "train.l2", "train.patience", "train.val_every", "train.val_max_cases", "train.keep_checkpoints",
                "train.min_steps_per_epoch", "recommend.foldin_steps", "recommend.foldin_l2",
                "ranker.cases_per_playlist", "ranker.max_playlists", "ranker.fit_negatives", "ranker.threads",
                "graph.position_decay", "graph.followers_gain", "graph.edits_gain", "baselines.ease_max_tracks",
                "baselines.tune_cases", "map.min_dist", "map.regions", "tune.max_minutes", "tune.ranker_trials"]
SHARES = ["graph.train_fraction", "graph.val_fraction", "graph.holdout_playlists", "graph.holdout_tracks",
          "ranker.feature_fraction", "evaluate.recent_share", "synth.community_focus", "synth.niche_share",
          "synth.niche_mass", "synth.new_share"]
RANGES = {**{k: (0, None, False) for k in POSITIVE}, **{k: (1, None, True) for k in AT_LEAST_1},
          **{k: (0, None, True) for k in NOT_NEGATIVE}, **{k: (0, 1, True) for k in SHARES},
          "ranker.folds": (2, None, True), "ranker.num_leaves": (2, None, True), "map.n_neighbors": (2, None, True)}


def _check_value(key: str, value: Any, source: str) -> None:
    if value is None:
        return
    if key in CHOICES and value not in CHOICES[key]:
        close = difflib.get_close_matches(str(value), CHOICES[key], n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{source}: '{key}' must be one of {', '.join(CHOICES[key])}, got {value!r}{hint}")
    if key in RANGES:
        low, high, inclusive = RANGES[key]
        ok = (value >= low if inclusive else value > low) and (high is None or value <= high)
        if not ok:
            want = f"between {low} and {high}" if high is not None else f"{'at least' if inclusive else 'above'} {low}"
            raise ConfigError(f"{source}: '{key}' must be {want}, got {value!r}")


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
    _check_value(key, value, source)
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


# ------------------------------------------------------------------ command lines

def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config over conf/default.yaml")
    p.add_argument("--root", metavar="URI", help="storage root (storage.root)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=3 (repeatable)")


def config_from_args(args: argparse.Namespace, extra: list[str] = ()):
    """The config of a parsed command line; `extra` are overrides derived from stage options."""
    cfg = load_config(args.config, [*args.overrides, *extra], root=args.root)
    storage.configure(cfg.storage)
    return cfg
