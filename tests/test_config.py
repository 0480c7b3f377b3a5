"""Config: every key documented in conf/default.yaml, overrides, unknown keys rejected with the
closest valid key, --root, stage paths."""
from __future__ import annotations

from importlib import resources

import pytest
import yaml
from conftest import musicmap

from musicmap import storage
from musicmap.config import ConfigError, _flatten, default_yaml_text, load_config


def test_every_key_is_documented_in_place():
    lines = default_yaml_text().splitlines()
    keys = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue  # blank, comment, section header
        keys += 1
        above = lines[i - 1].strip()
        assert above.startswith("#"), f"conf/default.yaml: '{stripped}' has no comment above it"
    assert keys == len(_flatten(yaml.safe_load(default_yaml_text())))


def test_overrides_types_and_root():
    cfg = load_config(overrides=["train.epochs=3", "train.lr=0.5", "model.use_edge_weight=true"],
                      root="s3://bucket/mm")
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.5 and cfg.model.use_edge_weight is True
    assert cfg.storage.root == "s3://bucket/mm"
    assert storage.stage_uri(cfg, "graph") == "s3://bucket/mm/graph"
    cfg = load_config(overrides=["paths.model=/elsewhere/model/"])
    assert storage.stage_uri(cfg, "model") == "/elsewhere/model"
    with pytest.raises(ConfigError, match="'train.epochs' must be int"):
        load_config(overrides=["train.epochs=many"])


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch' \(did you mean 'train.epochs'\?\)"):
        load_config(overrides=["train.epoch=3"])
    f = tmp_path / "mine.yaml"
    f.write_text("model:\n  dims: 32\n")
    with pytest.raises(ConfigError, match=rf"{f}: unknown config key 'model.dims' \(did you mean 'model.dim'\?\)"):
        load_config(f)
    with pytest.raises(ConfigError, match="'train' is a section"):
        load_config(overrides=["train=3"])


def test_shipped_configs_load():
    demo = load_config(str(resources.files("musicmap.conf").joinpath("demo.yaml")))
    assert demo.storage.root == "demo-data" and demo.synth.playlists == 20000
    assert demo.train.epochs == 12 and demo.recommend.playlists == "test"
    assert demo.model.dim == load_config().model.dim                 # unchanged keys keep the defaults
    cluster = load_config(str(resources.files("musicmap.conf").joinpath("cluster.example.yaml")))
    assert cluster.storage.root.startswith("s3://") and cluster.train.device == cluster.recommend.device == "cuda"


def test_cli_rejects_a_bad_key_in_one_line(tmp_path):
    p = musicmap("train", "--root", str(tmp_path), "--set", "train.epoch=3", check=False)
    assert p.returncode == 2
    assert "unknown config key 'train.epoch' (did you mean 'train.epochs'?)" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("override, message", [
    ("recommend.method=rankr", "'recommend.method' must be one of auto, ranker, lightgcn, got 'rankr' (did you mean 'ranker'?)"),
    ("recommend.foldin=optimised", "'recommend.foldin' must be one of auto, lightgcn, mean, optimized, got 'optimised' (did you mean 'optimized'?)"),
    ("train.device=cudaa", "'train.device' must be one of auto, cpu, cuda, got 'cudaa' (did you mean 'cuda'?)"),
    ("train.lr=-0.01", "'train.lr' must be at least 0, got -0.01"),
    ("train.epochs=-1", "'train.epochs' must be at least 0, got -1"),
    ("graph.train_fraction=1.5", "'graph.train_fraction' must be between 0 and 1, got 1.5"),
])
def test_a_bad_value_fails_when_the_config_loads(override, message, tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert str(e.value) == f"--set {override}: {message}"
    # from a file too, and from the command line in one line before anything runs
    key, value = override.split("=")
    f = tmp_path / "bad.yaml"
    f.write_text(f"{key.split('.')[0]}:\n  {key.split('.')[1]}: {value}\n")
    with pytest.raises(ConfigError, match=f"^{f}: "):
        load_config(f)
    p = musicmap("recommend", "--root", str(tmp_path), "--set", override, check=False)
    assert p.returncode == 2 and p.stderr.strip().endswith(message) and "Traceback" not in p.stderr
