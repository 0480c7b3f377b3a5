"""The whole pipeline as a user runs it: the installed `musicmap` command from a folder outside the
checkout (local Spark, torchrun with 2 processes), README's stages in order, on s3:// against a
real S3 server on loopback, equal to the same run on local files. README's other commands are in
test_commands.py, bad input end to end in test_bad_input.py."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import CLI_TRAIN, ROOT, WORKDIR, make_bucket, musicmap

from musicmap import schemas, storage
from musicmap.train.export import load_model


def pipeline(root: str) -> dict:
    """synth -> build-graph -> train (2 processes) -> fit-ranker -> recommend (+ challenge) -> evaluate."""
    mpd = f"{root}/mpd"
    out = {}
    out["synth"] = musicmap("synth", "--playlists", "2000", "--seed", "11", "--out", mpd, "--challenge",
                            "--set", "synth.challenge_per_category=10")
    out["build"] = musicmap("build-graph", "--root", root)
    out["train"] = musicmap("train", "--root", root, "--nproc", "2", *CLI_TRAIN)
    # the fewest folds and rounds: the runs are compared with each other, not with a baseline
    out["fit-ranker"] = musicmap("fit-ranker", "--root", root, "--set", "train.progress=false",
                                 "--set", "ranker.folds=2", "--set", "ranker.rounds=20")
    out["recommend"] = musicmap("recommend", "--root", root, "--playlists", "all", "--challenge",
                                f"{mpd}/challenge_set.json")
    out["evaluate"] = musicmap("evaluate", "--root", root)
    return out


def tables(root: str) -> dict:
    got = {}
    g = storage.open_committed(f"{root}/graph")
    for name, schema in schemas.GRAPH_TABLES.items():
        t = storage.read_parquet(g.path(name), schema=schema)
        got[name] = t.sort_by([(c, "ascending") for c in t.schema.names if c in
                               ("playlist_idx", "track_idx", "pid", "category", "file", "rule")])
    r = storage.open_committed(f"{root}/recs")
    got["recs"] = storage.read_parquet(r.path(), schema=schemas.RECS).sort_by(
        [("pid", "ascending"), ("category", "ascending"), ("rank", "ascending")])
    got["submission"] = storage.read_bytes(r.path("submission.csv.gz"))
    m = storage.open_committed(f"{root}/metrics")
    got["metrics"] = json.loads(storage.read_bytes(m.path("metrics.json")))["methods"]
    got["stats"] = json.loads(storage.read_bytes(g.path("stats.json")))["reconciliation"]
    got["stats"]["files"].pop("folder")      # where the slices were read: the one thing that differs
    return got


@pytest.mark.slow
def test_pipeline_on_s3_equals_the_local_run(s3_server, tmp_path):
    make_bucket("mm-e2e")
    storage.configure()
    # the two runs are independent processes: side by side, the suite waits for one
    with ThreadPoolExecutor(2) as pool:
        s3_run, local_run = pool.submit(pipeline, "s3://mm-e2e/mm"), pool.submit(pipeline, str(tmp_path / "mm"))
        s3, _ = s3_run.result(), local_run.result()
    assert "passes the challenge checks" in s3["recommend"].stdout
    names = sorted(storage.listdir("s3://mm-e2e/mm"))
    assert names == ["graph", "metrics", "model", "mpd", "ranker", "recs"]
    a, b = tables("s3://mm-e2e/mm"), tables(str(tmp_path / "mm"))
    for name in ("tracks", "playlists", "edges", "eval", "quarantine", "recs"):
        for col in a[name].schema.names:
            if col in ("weight", "score"):
                np.testing.assert_allclose(a[name][col].to_numpy(), b[name][col].to_numpy(), rtol=1e-6)
            else:
                assert a[name][col].to_pylist() == b[name][col].to_pylist(), (name, col)
    assert a["submission"] == b["submission"]
    assert a["metrics"] == b["metrics"] and a["stats"] == b["stats"]
    ma, mb = load_model("s3://mm-e2e/mm/model"), load_model(str(tmp_path / "mm" / "model"))
    np.testing.assert_array_equal(ma.tracks, mb.tracks)
    np.testing.assert_array_equal(ma.playlists, mb.playlists)
    assert ma.manifest["best"] == mb.manifest["best"]
    # nothing of the S3 run landed on local disk: a mis-resolved s3:// URI would be a folder
    # "s3:" (or "mm-e2e") relative to where the commands ran
    for where in (ROOT, WORKDIR, tmp_path):
        assert not [p for p in where.iterdir() if p.name.startswith(("s3:", "mm-e2e"))], where
