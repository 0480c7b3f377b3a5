"""The whole pipeline as a user runs it: the installed `musicmap` command from a folder outside the
checkout (local Spark, torchrun with 2 processes), every sub-command of README's stage table once;
on s3:// against a real S3 server on loopback, equal to the same run on local files; a stage run
from a non-editable install (the wheel); and a dataset mixing every kind of bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import reference_graph
from conftest import ROOT, TRAIN_SETTINGS, WORKDIR, build_wheel, make_bare_venv, make_bucket, musicmap
from mpd_faults import make_bad_dataset

from musicmap import schemas, storage
from musicmap.config import load_config
from musicmap.train.export import load_model

SETS = sum((["--set", o] for o in [*TRAIN_SETTINGS, "train.epochs=2"]), [])


def pipeline(root: str) -> dict:
    """synth -> build-graph -> train (2 processes) -> fit-ranker -> recommend (+ challenge) -> evaluate."""
    mpd = f"{root}/mpd"
    out = {}
    out["synth"] = musicmap("synth", "--playlists", "2000", "--seed", "11", "--out", mpd, "--challenge",
                            "--set", "synth.challenge_per_category=10")
    out["build"] = musicmap("build-graph", "--root", root)
    out["train"] = musicmap("train", "--root", root, "--nproc", "2", *SETS)
    out["fit-ranker"] = musicmap("fit-ranker", "--root", root, "--set", "train.progress=false")
    out["recommend"] = musicmap("recommend", "--root", root, "--playlists", "all", "--challenge",
                                f"{mpd}/challenge_set.json")
    out["evaluate"] = musicmap("evaluate", "--root", root)
    return out


def the_other_commands(root: str) -> dict:
    """check, similar, map and tune: README's stage table beyond the pipeline."""
    tracks = storage.read_parquet(storage.open_committed(f"{root}/graph").path("tracks"), schema=schemas.TRACKS)
    top = tracks.sort_by("track_idx").slice(0, 1).to_pylist()[0]
    return {"check": musicmap("check", f"{root}/mpd"),
            "similar": musicmap("similar", "--root", root, "--track", top["track_name"], "--artist",
                                top["artist_name"]),
            "map": musicmap("map", "--root", root),
            "tune": musicmap("tune", "--root", root, "--trials", "1", "--set", "tune.ranker_trials=1", *SETS),
            "top": top}


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

    # the rest of README's stage table, on the local run, as installed
    root = str(tmp_path / "mm")
    other = the_other_commands(root)
    assert "number of playlists 2000" in other["check"].stdout
    assert f"{other['top']['track_name']} - {other['top']['artist_name']}" in other["similar"].stdout
    page = other["map"].stdout.strip().splitlines()[-1].removeprefix("open ")
    assert page.endswith("index.html") and "{{TITLE}}" not in open(page).read()
    assert "best settings" in other["tune"].stdout
    assert storage.open_committed(f"{root}/tune").version
    assert not list(WORKDIR.iterdir()), "a command wrote into the folder it was run from"


@pytest.mark.slow
def test_a_non_editable_install_runs_a_stage(trained_small, tmp_path):
    """The wheel, installed (not editable) into a Python that has the dependencies but not the
    project, runs `musicmap map` (which reads its page template from the package) from a folder
    outside the checkout."""
    venv = make_bare_venv(tmp_path / "venv")
    wheel = build_wheel(tmp_path / "wheel")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    root = tmp_path / "root"
    for stage in ("graph", "model"):
        shutil.copytree(trained_small / stage, root / stage)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import musicmap; print(musicmap.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert where.startswith(str(venv)), where                    # the installed copy, not the checkout
    p = musicmap("map", "--root", str(root), exe=venv / "bin" / "musicmap", cwd=tmp_path)
    page = p.stdout.strip().splitlines()[-1].removeprefix("open ")
    assert "Music Map:" in open(page).read()


@pytest.mark.slow
def test_bad_input_end_to_end(mpd_small, tmp_path):
    """Every kind of bad input the checker knows, a file that is not UTF-8 and an empty file: the
    pipeline completes, each bad item is quarantined with its reason, the counts reconcile."""
    root = tmp_path / "mm"
    faults = make_bad_dataset(mpd_small / "mpd", root / "mpd")
    check = musicmap("check", str(root / "mpd"), check=False)
    assert check.returncode == 1
    # a catalogue cut at 2 train playlists: the track filter's term is checked too
    build = musicmap("build-graph", "--root", str(root), "--set", "graph.min_playlists=2")
    assert "checks: all reconcile" in build.stdout
    musicmap("train", "--root", str(root), "--nproc", "2", *SETS)
    musicmap("recommend", "--root", str(root), "--playlists", "test")
    ev = musicmap("evaluate", "--root", str(root))
    report = json.loads(storage.read_bytes(storage.open_committed(str(root / "metrics")).path("metrics.json")))
    row = next(line for line in ev.stdout.splitlines() if line.startswith("lightgcn "))
    printed = [float(x) for x in row.split()[1:]]
    assert printed[2] == pytest.approx(report["methods"]["lightgcn"]["challenge"]["all"]["ndcg"], abs=5e-5)
    g = storage.open_committed(str(root / "graph"))
    q = storage.read_parquet(g.path("quarantine"), schema=schemas.QUARANTINE).to_pylist()
    by_key = {(r["file"], r["pid"]): r["reason"] for r in q}
    rule_of = {(r["file"], r["pid"]): r["rule"] for r in q}
    for (file, pid), rule in faults.playlists.items():
        assert rule_of[(file, pid)] == rule and by_key[(file, pid)].startswith(rule + ":")
        assert f"{file}: pid {pid}: {rule}:" in check.stdout       # the checker agrees
    for file, rule in faults.files.items():
        assert by_key[(file, None)].startswith(rule)
        assert f"{file}: pid -: {rule}:" in check.stdout
    stats = json.loads(storage.read_bytes(g.path("stats.json")))["reconciliation"]
    from test_build_graph import assert_terms_match
    assert_terms_match(stats, reference_graph.build(str(root / "mpd"), load_config(overrides=["graph.min_playlists=2"]))["counts"])
    assert stats["occurrences"]["train"]["removed_track_filter"] > 0
    assert stats["files"]["read"] == 3 + len(faults.files)
    assert stats["playlists"]["read"] == 3000 + 1                    # the readable files' playlists
    assert stats["playlists"]["quarantined"] == len(faults.playlists)
