"""build_graph on generated data, with real local Spark: the tables equal an independent
plain-Python build (tests/reference_graph.py), the reconciliation adds up, the catalogue comes
from train playlists only, ids are dense and stable, bad input is quarantined, and an s3://
round trip (loopback S3 server) gives the same tables as a local run."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
import reference_graph
from conftest import build_graph, make_bucket
from mpd_faults import make_bad_dataset

from musicmap import cases, check, mpd, schemas, storage
from musicmap.config import load_config
from musicmap.errors import InputError

SORT = {"tracks": ["track_idx"], "playlists": ["playlist_idx"], "edges": ["playlist_idx", "track_idx"],
        "eval": ["pid", "category"], "quarantine": ["file", "pid", "rule"]}


def read_tables(graph_uri: str) -> dict[str, pa.Table]:
    g = storage.open_committed(graph_uri)
    return {name: storage.read_parquet(g.path(name), schema=schema).sort_by([(k, "ascending") for k in SORT[name]])
            for name, schema in schemas.GRAPH_TABLES.items()}


def assert_same_tables(a: dict, b: dict, names=("tracks", "playlists", "edges", "eval")) -> None:
    for name in names:
        x, y = a[name], b[name].sort_by([(k, "ascending") for k in SORT[name]])
        assert x.schema.names == y.schema.names, name
        assert x.num_rows == y.num_rows, (name, x.num_rows, y.num_rows)
        for col in x.schema.names:
            if col == "weight":
                np.testing.assert_allclose(x[col].to_numpy(), y[col].to_numpy(), rtol=1e-6)
            else:
                assert x[col].to_pylist() == y[col].to_pylist(), (name, col)


def test_schemas_are_the_declared_ones(graph_small):
    root, _ = graph_small
    g = storage.open_committed(str(root / "graph"))
    for name, schema in schemas.GRAPH_TABLES.items():
        got = storage.read_parquet(g.path(name)).schema
        assert got.remove_metadata().equals(schema), (name, got, schema)


def test_tables_equal_an_independent_python_build(graph_small):
    root, _ = graph_small
    ours = read_tables(str(root / "graph"))
    ref = reference_graph.build(str(root / "mpd"), load_config())
    assert_same_tables(ours, ref)
    assert ours["quarantine"].num_rows == 0


def assert_terms_match(rec: dict, ref: dict) -> None:
    """Every term of stats.json's reconciliation against the plain-Python build's own count (the
    job's checks only say its terms add up; this says each one is right)."""
    p, o, t = rec["playlists"], rec["occurrences"], rec["occurrences"]["train"]
    assert p["read"] == ref["playlists_read"] and o["read"] == ref["occurrences_read"]
    assert rec["files"]["unreadable"]["files"] == ref["unreadable_files"]
    assert p["quarantined"] == ref["quarantined_playlists"]
    assert o["quarantined"] == ref["quarantined_occurrences"]
    assert p["valid"] == ref["valid"] and p["by_split"] == ref["by_split"]
    assert o["by_split"] == ref["occurrences_by_split"]
    assert t["total"] == ref["train_occurrences"] and t["edges"] == ref["edges"]
    assert t["repeats_within_playlist"] == ref["repeats_within_playlist"]
    assert t["held_out_for_evaluation"] == ref["held_out_for_evaluation"]
    assert t["removed_track_filter"] == ref["removed_track_filter"]
    assert t["removed_with_playlist_min_tracks"] == ref["removed_with_playlist_min_tracks"]
    assert p["train_removed_min_tracks"] == ref["removed_playlists_min_tracks"]


def test_reconciliation_adds_up(graph_small):
    root, stats = graph_small
    rec = stats["reconciliation"]
    ref = reference_graph.build(str(root / "mpd"), load_config())["counts"]
    assert_terms_match(rec, ref)
    assert rec["playlists"]["read"] == 3000
    assert rec["playlists"]["by_split"] == {"train": 2400, "val": 300, "test": 300}
    t = rec["occurrences"]["train"]
    assert t["held_out_for_evaluation"] > 0 and t["repeats_within_playlist"] > 0   # both happen here
    assert t["removed_track_filter"] == 0        # the catalogue keeps every track (graph.min_playlists 1)
    assert stats["graph"]["interactions"] == t["edges"]
    written = json.loads((root / "graph" / storage.open_committed(str(root / "graph")).version
                          / "stats.json").read_text())
    assert written["reconciliation"] == rec
    official = stats["input_official"]
    assert official["playlists"] == 3000 and official["unique_tracks"] > stats["graph"]["tracks"]
    # the input's official statistics equal those of `musicmap check`, counted independently
    report = check.check(str(root / "mpd"), show_progress=False)
    assert (official["unique_tracks"], official["unique_albums"], official["unique_artists"],
            official["unique_titles"], official["unique_normalized_titles"], official["tracks"]) == (
        len(report.tracks), len(report.albums), len(report.artists), len(report.titles),
        len(report.norm_titles), report.occurrences)


def test_catalogue_comes_from_train_playlists_without_their_held_out_tracks(graph_small):
    """The catalogue and its counts come from train playlists only, and the tracks held out of
    graph playlists (musicmap.cases) reach neither the counts nor the edges: they are those
    playlists' cases, the rest of each playlist its seeds."""
    root, _ = graph_small
    g = load_config().graph
    t = read_tables(str(root / "graph"))
    split = dict(zip(t["playlists"]["pid"].to_pylist(), t["playlists"]["split"].to_pylist()))
    train_count, other, held = Counter(), set(), {}
    for f in (root / "mpd").glob("mpd.slice.*.json"):
        for p in json.loads(f.read_text())["playlists"]:
            uris = {x["track_uri"] for x in p["tracks"]}
            if split.get(p["pid"]) != "train":
                other |= uris
                continue
            first = {}
            for x in p["tracks"]:
                first.setdefault(x["track_uri"], x["pos"])
            held[p["pid"]] = {u for u, pos in first.items()
                              if cases.held_out(p["pid"], pos, g.eval_random_seed, g.holdout_playlists, g.holdout_tracks)}
            train_count.update(uris - held[p["pid"]])
    catalogue = t["tracks"]["track_uri"].to_pylist()
    assert set(catalogue) == {u for u, c in train_count.items() if c >= g.min_playlists}
    only_eval = other - set(train_count)
    assert only_eval and not only_eval & set(catalogue)
    assert t["tracks"]["train_playlists"].to_pylist() == [train_count[u] for u in catalogue]
    # no held-out (playlist, track) pair is an edge
    idx = {u: i for i, u in enumerate(catalogue)}
    pl = dict(zip(t["playlists"]["pid"].to_pylist(), t["playlists"]["playlist_idx"].to_pylist()))
    edges = set(zip(t["edges"]["playlist_idx"].to_pylist(), t["edges"]["track_idx"].to_pylist()))
    pairs = [(pl[pid], idx[u]) for pid, h in held.items() if pid in pl for u in h if u in idx]
    assert sum(map(len, held.values())) > 50 and not edges & set(pairs)
    # each is its playlist's case (half graph_val, half graph_test)
    ev = t["eval"].filter(pa.compute.equal(t["eval"]["category"], cases.CATEGORY)).to_pylist()
    assert {r["pid"]: set(r["holdout_uris"]) for r in ev} == {p: h for p, h in held.items() if h and p in pl}
    assert {r["split"] for r in ev} == set(cases.SPLITS)
    for r in ev:
        assert not set(r["seed_uris"]) & set(r["holdout_uris"])
        assert r["seed_idx"] == [idx[u] for u in r["seed_uris"]]


def test_ids_are_dense_and_stable_across_reruns(spark, graph_small, tmp_path):
    root, _ = graph_small
    first = read_tables(str(root / "graph"))
    assert first["tracks"]["track_idx"].to_pylist() == list(range(first["tracks"].num_rows))
    assert first["playlists"]["playlist_idx"].to_pylist() == list(range(first["playlists"].num_rows))
    e = first["edges"]
    assert e["playlist_idx"].to_numpy().max() < sum(s == "train" for s in first["playlists"]["split"].to_pylist())
    out = str(tmp_path / "graph")
    shutil.copytree(root / "graph", out)          # the first run's committed output
    # a rerun commits a new version (the previous one kept for readers, storage.keep_versions);
    # its edge files hold at most rows_per_part rows each
    build_graph(spark, str(root), output_uri=out, overrides=["graph.rows_per_part=20000"])
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty()  # nothing left cached
    assert len([n for n in storage.listdir(out) if n.startswith("v-")]) == 2
    assert_same_tables(first, read_tables(out), names=("tracks", "playlists", "edges", "eval", "quarantine"))
    edge_files = sorted(Path(storage.open_committed(out).path("edges")).glob("*.parquet"))
    rows = [pq.ParquetFile(f).metadata.num_rows for f in edge_files]
    assert sum(rows) == e.num_rows and max(rows) <= 20000 and len(rows) >= e.num_rows / 20000


def test_bad_input_is_quarantined_and_the_rest_kept(spark, mpd_small, tmp_path):
    faults = make_bad_dataset(mpd_small / "mpd", tmp_path / "mpd")
    stats = build_graph(spark, str(tmp_path))
    t = read_tables(str(tmp_path / "graph"))
    q = t["quarantine"].to_pylist()
    got = {(r["file"], r["pid"]): r for r in q}
    for (file, pid), rule in faults.playlists.items():
        assert (file, pid) in got, (file, pid, rule)
        assert got[(file, pid)]["rule"] == rule, (rule, got[(file, pid)])
    # the reader's fast path refuses every slice holding a fault (the exact path names them)
    from musicmap.spark_jobs.datasources import fast_slice
    for f in sorted((tmp_path / "mpd").glob("mpd.slice.*.json")):
        has_fault = f.name in faults.files or any(file == f.name and rule not in mpd.DATASET_RULES
                                                  for (file, _), rule in faults.playlists.items())
        assert (fast_slice(f.name, 0, f.read_bytes()) is None) == has_fault, f.name
    # every rule of musicmap.mpd is injected somewhere
    assert set(faults.playlists.values()) | set(faults.files.values()) >= (
        set(mpd.PLAYLIST_RULES) | set(mpd.DATASET_RULES) | set(mpd.FILE_RULES)) - {
        "int_out_of_range", "invalid_unicode", "bad_compression", "vanished", "changed_during_read"}
    for file, rule in faults.files.items():
        assert got[(file, None)]["rule"] == rule, (file, got.get((file, None)))
    assert len(q) == len(faults.playlists) + len(faults.files)
    # everything else is kept, with the same tables as the plain-Python build of the same files
    valid_pids = {p for p in t["playlists"]["pid"].to_pylist()}
    assert len(valid_pids) == 3000 + 1 - len(faults.playlists)
    ref = reference_graph.build(str(tmp_path / "mpd"), load_config())
    assert_same_tables(t, ref, names=("tracks", "playlists", "edges", "eval"))
    assert sorted((r["file"], -1 if r["pid"] is None else r["pid"], r["rule"]) for r in q) == sorted(
        (r["file"], r["pid"] if r["pid"] is not None else -1, r["rule"]) for r in ref["quarantine"].to_pylist())
    rec = stats["reconciliation"]
    assert_terms_match(rec, ref["counts"])
    assert rec["files"]["unreadable"]["files"] == len(faults.files)
    assert rec["playlists"]["quarantined"] == len(faults.playlists)
    assert set(rec["playlists"]["quarantined_by_rule"]) == set(faults.playlists.values())


def test_strict_mode_fails_on_bad_input(spark, mpd_small, tmp_path):
    make_bad_dataset(mpd_small / "mpd", tmp_path / "mpd", file_faults=False, encoding_faults=False)
    with pytest.raises(InputError, match="bad inputs with graph.strict=true"):
        build_graph(spark, str(tmp_path), overrides=["graph.strict=true"])
    assert not (tmp_path / "graph" / "_SUCCESS").exists()
    # the frames cached before the failing step were released all the same
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty()


def test_s3_round_trip_equals_a_local_run(spark, graph_small, s3_server):
    root, _ = graph_small
    make_bucket("mm-graph")
    storage.configure()
    for f in (root / "mpd").glob("mpd.slice.*.json"):
        storage.write_bytes(f"s3://mm-graph/mm/mpd/{f.name}", f.read_bytes())
    creds = [f"storage.s3_endpoint_url={s3_server}", "storage.s3_region=us-east-1",
             "storage.s3_access_key_id=testing", "storage.s3_secret_access_key=testing"]
    build_graph(spark, "s3://mm-graph/mm", overrides=creds)
    assert_same_tables(read_tables(str(root / "graph")), read_tables("s3://mm-graph/mm/graph"),
                       names=("tracks", "playlists", "edges", "eval", "quarantine"))


def test_fast_read_path_equals_the_exact_one_and_leaves_bad_bytes_to_it(mpd_small):
    """The reader's fast path (pyarrow, rules on whole columns) gives exactly the rows of the
    per-playlist path, and a file it cannot vouch for (here: bytes that are not UTF-8 inside a
    track name, which the JSON parser itself lets through) goes to the exact path."""
    from musicmap.spark_jobs.datasources import exact_slice, fast_slice, read_slice
    f = sorted((mpd_small / "mpd").glob("mpd.slice.*.json"))[0]
    data = f.read_bytes()
    fast = fast_slice(f.name, 3, data)
    assert fast is not None and fast.num_rows == 1000
    assert fast.equals(exact_slice(f.name, 3, data))
    i = data.index(b'"track_name": "') + len(b'"track_name": "')
    bad = data[:i] + b"\xff" + data[i:]
    assert fast_slice(f.name, 3, bad) is None
    rows = read_slice(f.name, 3, bad).to_pylist()
    assert len(rows) == 1 and rows[0]["pid"] is None and rows[0]["reason"].startswith("not_utf8: byte ")
