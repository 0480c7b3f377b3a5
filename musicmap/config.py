"""Configuration: conf/default.yaml holds every key, its default and what it means; each section
is a typed dataclass here (Section: each key's type and allowed values, one place for both);
other YAML files and --set overrides change a subset of the keys. An unknown key is rejected
with the closest valid key, a value of another type or outside what its key allows with what
it allows.

    cfg = load_config("conf/demo.yaml", overrides=["train.epochs=3"], root="s3://b/mm")
    cfg.train.epochs            # 3
    cfg.to_dict()               # plain nested dict (for manifests)
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import functools
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from musicmap import storage
from musicmap.errors import MusicMapError


class ConfigError(MusicMapError):
    """A config file or override that names an unknown key or gives a value of the wrong type."""


class Section:
    """A config section: one frozen dataclass per section of conf/default.yaml, each field a key
    with its type and, where it has one, its allowed values (choice, at_least, above, between).
    The defaults and the documentation of every key are conf/default.yaml's (section() reads
    them), so each key is declared once here and valued and explained once there."""

    def to_dict(self) -> dict:
        return copy.deepcopy(dataclasses.asdict(self))


def choice(*values) -> dataclasses.Field:
    return dataclasses.field(metadata={"choices": values})


def at_least(low) -> dataclasses.Field:
    return dataclasses.field(metadata={"range": (low, None, True)})


def above(low) -> dataclasses.Field:
    return dataclasses.field(metadata={"range": (low, None, False)})


def between(low, high) -> dataclasses.Field:
    return dataclasses.field(metadata={"range": (low, high, True)})


SECTIONS: dict[str, type] = {}


def section(name: str):
    """Make `cls` the frozen dataclass of section `name`, its defaults read from conf/default.yaml."""
    def make(cls):
        defaults = _defaults()[name]
        for key in cls.__annotations__:
            f = cls.__dict__.get(key)
            f = f if isinstance(f, dataclasses.Field) else dataclasses.field()
            value = defaults[key]
            if isinstance(value, (list, dict)):
                f.default_factory = lambda v=value: copy.deepcopy(v)
            else:
                f.default = value
            setattr(cls, key, f)
        SECTIONS[name] = dataclasses.dataclass(frozen=True)(cls)
        return SECTIONS[name]
    return make


def default_yaml_text() -> str:
    return resources.files("musicmap.conf").joinpath("default.yaml").read_text()


@functools.cache
def _defaults() -> dict:
    return yaml.safe_load(default_yaml_text())


@section("storage")
class Storage(Section):
    root: str
    s3_endpoint_url: str | None
    s3_region: str | None
    s3_access_key_id: str | None
    s3_secret_access_key: str | None
    retries: int = at_least(1)
    retry_backoff_s: float = above(0)
    keep_versions: int = at_least(1)
    cache_dir: str | None


@section("paths")
class Paths(Section):
    mpd: str | None
    graph: str | None
    model: str | None
    ranker: str | None
    recs: str | None
    metrics: str | None
    tune: str | None
    map: str | None


@section("synth")
class Synth(Section):
    playlists: int = at_least(1)
    random_seed: int
    tracks: int | None = at_least(1)
    communities: int = at_least(1)
    community_focus: float = between(0, 1)
    popularity_exponent: float = above(0)
    niche_share: float = between(0, 1)
    niche_mass: float = between(0, 1)
    new_share: float = between(0, 1)
    trend_days: float = above(0)
    challenge_per_category: int = at_least(0)


@section("graph")
class Graph(Section):
    min_playlists: int = at_least(1)
    min_tracks: int = at_least(1)
    train_fraction: float = between(0, 1)
    val_fraction: float = between(0, 1)
    strict: bool
    position_decay: float = at_least(0)
    followers_gain: float = at_least(0)
    edits_gain: float = at_least(0)
    eval_random_seed: int
    holdout_playlists: float = between(0, 1)
    holdout_tracks: float = between(0, 1)
    seed_protocol: bool
    spark_master: str
    spark_driver_memory: str
    shuffle_partitions: int | None = at_least(1)
    rows_per_part: int = at_least(1)


@section("model")
class Model(Section):
    dim: int = at_least(1)
    layers: int = at_least(1)
    embed_min_playlists: int = at_least(1)
    use_edge_weight: bool
    init_std: float | None = above(0)


@section("train")
class Train(Section):
    epochs: int = at_least(0)
    max_minutes: float = at_least(0)
    max_steps: int = at_least(0)
    batch_size: int = at_least(1)
    min_steps_per_epoch: int = at_least(0)
    negatives: int = at_least(1)
    reject_positives: bool
    lr: float = at_least(0)
    l2: float = at_least(0)
    random_seed: int
    val_every: int = at_least(0)
    patience: int = at_least(0)
    val_max_cases: int = at_least(0)
    device: str = choice('auto', 'cpu', 'cuda')
    bf16: bool
    deterministic: bool
    keep_checkpoints: int = at_least(0)
    resume: bool
    progress: bool
    dist_backend: str
    dist_timeout_s: int = above(0)


@section("recommend")
class Recommend(Section):
    k: int = at_least(1)
    method: str = choice('auto', 'ranker', 'lightgcn')
    graph_method: str = choice('auto', 'lightgcn', 'rp3beta', 'cooccurrence', 'ease')
    playlists: str = choice('train', 'val', 'test', 'all', 'none')
    chunk: int = at_least(1)
    foldin: str = choice('auto', 'lightgcn', 'mean', 'optimized')
    foldin_steps: int = at_least(0)
    foldin_lr: float = above(0)
    foldin_l2: float = at_least(0)
    foldin_negatives: int = at_least(1)
    team_name: str
    contact: str
    device: str = choice('auto', 'cpu', 'cuda')


@section("ranker")
class Ranker(Section):
    per_source: int = at_least(1)
    cases_per_playlist: int = at_least(0)
    max_playlists: int = at_least(0)
    fit_negatives: int = at_least(0)
    folds: int = at_least(2)
    rounds: int = at_least(1)
    num_leaves: int = at_least(2)
    learning_rate: float = above(0)
    min_data_in_leaf: int = at_least(1)
    feature_fraction: float = between(0, 1)
    threads: int = at_least(0)
    chunk: int = at_least(1)
    random_seed: int


@section("evaluate")
class Evaluate(Section):
    k_small: int = at_least(1)
    k: int = at_least(1)
    split: str = choice('val', 'test')
    max_playlists: int = at_least(0)
    baselines: list
    recent_share: float = between(0, 1)
    chunk: int = at_least(1)


@section("baselines")
class Baselines(Section):
    rp3beta_alpha: list
    rp3beta_beta: list
    rp3beta_neighbours: int = at_least(1)
    cooccurrence_neighbours: int = at_least(1)
    ease_lambda: list
    ease_max_tracks: int = at_least(0)
    tune_cases: int = at_least(0)
    random_seed: int


@section("map")
class Map(Section):
    n_neighbors: int = at_least(2)
    min_dist: float = at_least(0)
    random_seed: int
    regions: int = at_least(0)
    label_artists: int
    label_words: int
    neighbours: int = at_least(1)
    vector_tracks: int


@section("tune")
class Tune(Section):
    trials: int = at_least(1)
    nproc: int = at_least(1)
    max_minutes: float = at_least(0)
    random_seed: int
    keep_trials: bool
    space: dict
    ranker_trials: int = at_least(0)
    ranker_space: dict



@dataclasses.dataclass(frozen=True)
class Config:
    """The whole config: one typed section per top-level key (cfg.train.lr), read-only."""
    sections: dict

    def __getattr__(self, name: str):
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(f"no config section '{name}'") from None

    def to_dict(self) -> dict:
        """A plain nested dict (for manifests)."""
        return {name: sec.to_dict() for name, sec in self.sections.items()}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


def _field(key: str) -> dataclasses.Field | None:
    """The declared field of a section key (section.name), None for keys below a dict-typed one
    (tune.space.model.dim)."""
    name, _, rest = key.partition(".")
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[name])}
    return fields.get(rest)


def _check_type(key: str, default: Any, value: Any, source: str) -> Any:
    """`value` of the key's declared type (an int is a float where a float is asked for; keys
    below a dict-typed key take the type of their default)."""
    f = _field(key)
    allowed = [TYPES[t.strip()] for t in f.type.split("|") if t.strip() != "None"] if f else [type(default)]
    if value is None:
        if f is None or "None" in f.type or default is None:
            return value
        raise ConfigError(f"{source}: '{key}' must be {allowed[0].__name__}, got None")
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed)
    if default is None and f is None:
        ok = True
    if not ok:
        raise ConfigError(f"{source}: '{key}' must be {allowed[0].__name__}, got {value!r}")
    return value


def _check_value(key: str, value: Any, source: str) -> None:
    """The key's allowed values (its field's choice or range), with the closest choice on a typo."""
    f = _field(key)
    if value is None or f is None:
        return
    choices, bounds = f.metadata.get("choices"), f.metadata.get("range")
    if choices and value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{source}: '{key}' must be one of {', '.join(choices)}, got {value!r}{hint}")
    if bounds:
        low, high, inclusive = bounds
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
    return Config({name: SECTIONS[name](**values) for name, values in data.items()})


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
