"""The two-stage default: the re-ranker fitted on validation playlists only, and what recommend and
evaluate do with it (real torchrun, real LightGBM)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from conftest import ROOT, musicmap, recs_table, run_cmd, torchrun_train

from musicmap import storage
from musicmap.cases import load_eval
from musicmap.config import load_config
from musicmap.graph import uri_index
from musicmap.recommend import context
from musicmap.recommend import fit_ranker as ranker
from musicmap.topk import topk

FAST_RANKER = ["ranker.max_playlists=60", "ranker.rounds=30", "ranker.folds=2", "train.progress=false"]


def test_trained_small_got_many_steps_and_validated_the_foldin(trained_small):
    m = json.loads(storage.read_bytes(storage.open_committed(str(trained_small / "model")).path("manifest.json")))
    assert m["steps_per_epoch"] >= 100
    assert set(m["foldin"]["val"]) == {"lightgcn", "mean", "optimized"}
    best = max(m["foldin"]["val"], key=lambda k: m["foldin"]["val"][k]["ndcg"])
    assert m["foldin"]["chosen"] == best and m["foldin"]["by"] == "validation NDCG"


def test_an_untrained_model_is_clearly_worse_than_a_trained_one(trained_small, tmp_path):
    """On generated data an untrained model must not score like a trained one (else generated
    data cannot tell whether training works)."""
    torchrun_train(trained_small, "train.epochs=0", model_dir=tmp_path / "untrained", nproc=1)
    val = {}
    for name, uri in (("untrained", tmp_path / "untrained"), ("trained", trained_small / "model")):
        m = json.loads(storage.read_bytes(storage.open_committed(str(uri)).path("manifest.json")))
        val[name] = max(v["ndcg"] for v in m["foldin"]["val"].values())
    assert val["trained"] > val["untrained"] + 0.15, val


def test_without_validation_cases_training_keeps_the_last_epoch(spark, mpd_small, tmp_path):
    from conftest import build_graph
    shutil.copytree(mpd_small / "mpd", tmp_path / "mpd")
    build_graph(spark, str(tmp_path), ["graph.train_fraction=1.0", "graph.val_fraction=0.0"])
    p = torchrun_train(tmp_path, "train.epochs=2", nproc=1)
    assert "keeps the last" in p.stderr
    m = json.loads(storage.read_bytes(storage.open_committed(str(tmp_path / "model")).path("manifest.json")))
    assert m["best"] == {"epoch": 2, "ndcg": None}
    assert m["foldin"]["chosen"] == "optimized" and m["foldin"]["val"] == {}


@pytest.fixture(scope="module")
def ranked(trained_small, tmp_path_factory):
    """A copy of trained_small with a fitted ranker."""
    root = tmp_path_factory.mktemp("ranked")
    for d in ("mpd", "graph", "model"):
        shutil.copytree(trained_small / d, root / d)
    sets = [a for o in FAST_RANKER for a in ("--set", o)]
    p = musicmap("fit-ranker", "--root", str(root), *sets)
    return root, p.stdout


def test_the_ranker_is_fitted_on_validation_playlists_only(ranked):
    root, _ = ranked
    cfg = load_config(root=str(root), overrides=FAST_RANKER)
    ctx = context.load_context(cfg, ranker=False)
    cases, n_val = ranker.fitting_cases(ctx, cfg.ranker)
    split = dict(zip(ctx.playlists["pid"].to_pylist(), ctx.playlists["split"].to_pylist()))
    assert {split[int(p)] for p in cases.pid} == {"val"}
    assert len(np.unique(cases.pid)) == 60 and len(cases) > n_val
    # drawn cases cut the playlist's own tracks: seeds and holdouts partition them
    val = load_eval(ctx.committed, "val", uri_index(ctx.tracks))
    own = {}
    for i, p in enumerate(val.pid.tolist()):
        own.setdefault(p, set()).update(val.seed_uris[i], val.holdout_uris[i])
    for i in range(n_val, len(cases)):
        seeds, held = set(cases.seed_uris[i]), set(cases.holdout_uris[i])
        assert not seeds & held and seeds | held == own[int(cases.pid[i])]
    m = json.loads(storage.read_bytes(storage.open_committed(str(root / "ranker")).path("manifest.json")))
    assert m["cases"]["playlists"] == 60
    # EASE^R is skipped, saying why: this catalogue is larger than baselines.ease_max_tracks
    assert set(m["cross_validation"]["methods"]) == {"ranker", "lightgcn", "cooccurrence", "popularity",
                                                      "recent_popularity", "rp3beta"}
    assert "ease_max_tracks" in m["tuned"]["ease"]["skipped"]
    # RP3beta and EASE^R were tuned on these validation cases: every grid point scored, the best kept
    rp3 = m["tuned"]["rp3beta"]
    assert len(rp3["grid"]) == 9 and rp3["val_ndcg"] == max(p["val_ndcg"] for p in rp3["grid"])


def test_recommend_serves_the_ranker_and_evaluate_shows_each_stage(ranked, tmp_path):
    root, fit_out = ranked
    assert "served by default" in fit_out
    sets = ["--set", "recommend.method=ranker", "--set", f"paths.recs={tmp_path / 'recs'}",
            "--set", f"paths.metrics={tmp_path / 'metrics'}"]
    p = musicmap("recommend", "--root", str(root), "--playlists", "test", *sets,
                 "--challenge", str(root / "mpd" / "challenge_set.json"))
    assert "recommend (ranker" in p.stdout and "passes the challenge checks" in p.stdout
    t, r = recs_table(str(tmp_path / "recs"))
    cfg = load_config(root=str(root))
    ctx = context.load_context(cfg, ranker=False)
    cases = load_eval(ctx.committed, "test", uri_index(ctx.tracks))
    per = {}
    for pid, cat, uri in zip(t["pid"].to_pylist(), t["category"].to_pylist(), t["track_uri"].to_pylist()):
        per.setdefault((pid, cat), []).append(uri)
    for i in range(len(cases)):
        got = per[(int(cases.pid[i]), cases.category[i])]
        assert len(set(got)) == 500 and not set(got) & set(cases.seed_uris[i])
    musicmap("evaluate", "--root", str(root), *sets)
    m = storage.open_committed(str(tmp_path / "metrics"))
    report = json.loads(storage.read_bytes(m.path("metrics.json")))
    assert set(report["methods"]) == {"ranker", "lightgcn", "popularity", "recent_popularity", "cooccurrence",
                                      "rp3beta"}
    assert "skipped" in report["tuned"]["ease"]
    assert report["model"]["served"] == "ranker"


def test_graph_playlists_get_the_method_measured_best_on_their_held_out_tracks(ranked, tmp_path):
    root, _ = ranked
    m = json.loads(storage.read_bytes(storage.open_committed(str(root / "ranker")).path("manifest.json")))
    g = m["graph_playlists"]
    assert g["cases"] > 0 and g["chosen"] == max(g["val_ndcg"], key=g["val_ndcg"].get)
    musicmap("recommend", "--root", str(root), "--playlists", "train", "--set", f"paths.recs={tmp_path / 'auto'}")
    summary = json.loads(storage.read_bytes(storage.open_committed(str(tmp_path / "auto")).path("summary.json")))
    assert summary["graph_playlists_method"] == g["chosen"]
    # recommend.graph_method=lightgcn: each graph playlist's embedding against the tracks LightGCN embeds
    musicmap("recommend", "--root", str(root), "--playlists", "train", "--set", "recommend.method=ranker",
             "--set", "recommend.graph_method=lightgcn", "--set", f"paths.recs={tmp_path / 'recs'}")
    t, _ = recs_table(str(tmp_path / "recs"))
    ctx = context.load_context(load_config(root=str(root)), ranker=False)
    pids = ctx.playlists.filter(pc.equal(ctx.playlists["split"], "train")).sort_by("playlist_idx")["pid"].to_pylist()
    q = torch.from_numpy(ctx.model.playlists[:5])
    T = len(ctx.model.tracks)
    expected, _ = topk(q, torch.from_numpy(ctx.model.tracks), 20,
                       exclude=[ctx.graph.playlist_tracks(p)[ctx.graph.playlist_tracks(p) < T] for p in range(5)])
    uris = ctx.uris.to_pylist()
    for p in range(5):
        got = t.filter(pc.equal(t["pid"], pids[p])).sort_by("rank")["track_uri"].to_pylist()[:20]
        assert got == [uris[i] for i in expected[p]]


def test_a_track_in_one_train_playlist_reaches_the_served_list(ranked):
    """LightGCN does not embed a track that sits in one train playlist; the catalogue and RP3beta
    still bring it to a new playlist made of that playlist's other tracks."""
    root, _ = ranked
    ctx = context.load_context(load_config(root=str(root), overrides=["recommend.method=ranker"]))
    counts = ctx.tracks["train_playlists"].to_numpy()
    T = len(ctx.model.tracks)
    lonely = [t for t in range(T, ctx.graph.num_tracks) if counts[t] == 1]
    assert lonely and counts[:T].min() >= 2                     # not embedded, in the catalogue
    rec, hits = ctx.recommender(), 0
    for t in lonely[:20]:
        p = int(ctx.graph.playlist[ctx.graph.track == t][0])
        seeds = np.setdiff1d(ctx.graph.playlist_tracks(p), [t])
        ids = rec.rank([seeds], [None], 500)[0][0]
        hits += t in ids
    assert hits >= 10, hits


def test_sharded_ranker_recommend_equals_unsharded(ranked, tmp_path):
    root, _ = ranked
    args = ["--root", str(root), "--playlists", "test", "--set", "recommend.method=ranker"]
    musicmap("recommend", *args, "--set", f"paths.recs={tmp_path / 'one'}")
    run_cmd(["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             str(ROOT / "recommend" / "main.py"), *args, "--set", f"paths.recs={tmp_path / 'two'}"])
    key = [("pid", "ascending"), ("category", "ascending"), ("rank", "ascending")]
    a, b = (recs_table(str(tmp_path / n))[0].sort_by(key) for n in ("one", "two"))
    assert a.num_rows == b.num_rows > 0
    assert a["track_uri"].to_pylist() == b["track_uri"].to_pylist()


def test_title_only_cases_go_where_cross_validation_says(ranked):
    root, _ = ranked
    m = json.loads(storage.read_bytes(storage.open_committed(str(root / "ranker")).path("manifest.json")))
    cold = m["no_seed_cases"]
    assert cold["cases"] > 0 and cold["chosen"] in ("ranker", "title")
    assert cold["chosen"] == max(cold["ndcg"], key=lambda k: (cold["ndcg"][k], k == "title"))
    cfg = load_config(root=str(root), overrides=["recommend.method=ranker"])
    ctx = context.load_context(cfg)
    rec = ctx.recommender()
    got = rec.rank([np.array([], np.int64)], ["Workout"], 50)[0][0]
    if cold["chosen"] == "title":
        assert list(got) == list(ctx.title_model.rank([np.array([], np.int64)], ["Workout"], 50)[0][0])
    assert len(set(got.tolist())) == 50
