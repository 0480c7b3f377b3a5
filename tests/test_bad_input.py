"""Bad input end to end: every kind of bad input the checker knows through the whole pipeline, as
a user runs it."""
from __future__ import annotations

import json

import pytest
import reference_graph
from conftest import CLI_TRAIN, musicmap
from mpd_faults import make_bad_dataset

from musicmap import schemas, storage
from musicmap.config import load_config


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
    musicmap("train", "--root", str(root), "--nproc", "2", *CLI_TRAIN)
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
