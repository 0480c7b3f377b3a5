"""recommend, evaluate and similar on a trained small model (real torchrun for the sharded run)."""
from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import ROOT, musicmap, recs_table, run_cmd

from musicmap import storage, submission, synth
from musicmap.cases import load_eval
from musicmap.config import load_config
from musicmap.graph import uri_index
from musicmap.recommend import context
from musicmap.recommend.recommenders import Popularity
from musicmap.tools import evaluate


@pytest.fixture(scope="module")
def trained(trained_small, tmp_path_factory):
    """This module's own copy of trained_small (its tests write recs/ and metrics/)."""
    root = tmp_path_factory.mktemp("recommend")
    for d in ("mpd", "graph", "model"):
        shutil.copytree(trained_small / d, root / d)
    return root


@pytest.fixture(scope="module")
def all_recs(trained):
    """recs for every playlist (train, val, test) and the challenge set."""
    out = trained / "recs_all"
    musicmap("recommend", "--root", str(trained), "--playlists", "all", "--set", f"paths.recs={out}",
             "--challenge", str(trained / "mpd" / "challenge_set.json"))
    return recs_table(str(out))


def test_k_distinct_tracks_never_a_seed_or_own_track(trained, all_recs):
    t, _ = all_recs
    cfg = load_config(root=str(trained))
    ctx = context.load_context(cfg)
    per = {}
    for pid, cat, rank, uri in zip(t["pid"].to_pylist(), t["category"].to_pylist(), t["rank"].to_pylist(),
                                   t["track_uri"].to_pylist()):
        per.setdefault((pid, cat), []).append((rank, uri))
    for key, rows in per.items():
        ranks = [r for r, _ in rows]
        assert sorted(ranks) == list(range(1, 501)), key
        assert len({u for _, u in rows}) == 500, key
    # train playlists never get their own tracks, eval cases never their seeds
    uris = ctx.uris.to_pylist()
    pid_of = ctx.playlists.filter(pc.equal(ctx.playlists["split"], "train")).sort_by("playlist_idx")["pid"].to_pylist()
    for p in range(0, ctx.graph.num_playlists, 97):
        own = {uris[i] for i in ctx.graph.playlist_tracks(p)}
        assert not own & {u for _, u in per[(pid_of[p], "train")]}
    for split in ("val", "test"):
        cases = load_eval(ctx.committed, split, uri_index(ctx.tracks))
        assert len(cases) > 0
        for i in range(len(cases)):
            assert not set(cases.seed_uris[i]) & {u for _, u in per[(int(cases.pid[i]), cases.category[i])]}
    counts = Counter(c for _, c in per)
    assert counts["train"] == ctx.graph.num_playlists and counts["challenge"] == 200


def test_submission_passes_the_challenge_rules(trained, all_recs):
    _, r = all_recs
    sub = r.path("submission.csv.gz")
    challenge = submission.read_challenge(str(trained / "mpd" / "challenge_set.json"))
    assert submission.validate_submission(sub, challenge) == []
    lines = [ln for ln in gzip.decompress(storage.read_bytes(sub)).decode().splitlines()
             if ln and not ln.startswith("#")]
    assert lines[0] == "team_info,musicmap,musicmap@example.com"
    assert len(lines) == 1 + 200 and all(len(ln.split(",")) == 501 for ln in lines[1:])


def test_validator_catches_each_broken_rule(trained, all_recs, tmp_path):
    _, r = all_recs
    challenge = submission.read_challenge(str(trained / "mpd" / "challenge_set.json"))
    good = [ln for ln in gzip.decompress(storage.read_bytes(r.path("submission.csv.gz"))).decode().splitlines()
            if ln and not ln.startswith("#")]
    seeded = next(p for p in challenge if p["seeds"])
    line_of = {int(ln.split(",", 1)[0]): i for i, ln in enumerate(good) if i}

    def broken(edit) -> list[str]:
        lines = list(good)
        edit(lines)
        f = tmp_path / "s.csv"
        f.write_text("\n".join(lines) + "\n")
        return submission.validate_submission(str(f), challenge)

    def short(lines):
        lines[1] = lines[1].rsplit(",", 1)[0]

    def repeat(lines):
        f = lines[1].split(",")
        lines[1] = ",".join(f[:-1] + [f[1]])

    def seed(lines):
        i = line_of[seeded["pid"]]
        f = lines[i].split(",")
        lines[i] = ",".join(f[:-1] + [seeded["seeds"][0]])

    cases = {
        "team_info": lambda lines: lines.__setitem__(0, "team,x"),
        "has 499 tracks": short,
        "repeats a track": repeat,
        "recommends a seed track": seed,
        "missing": lambda lines: lines.pop(),
        "appears twice": lambda lines: lines.append(lines[1]),
        "malformed track URI": lambda lines: lines.__setitem__(1, lines[1].replace("spotify:track:", "spotify:song:", 1)),
    }
    for needle, edit in cases.items():
        problems = broken(edit)
        assert any(needle in p for p in problems), (needle, problems)


def test_sharded_recommend_equals_unsharded(trained, tmp_path):
    args = ["--root", str(trained), "--playlists", "test"]
    musicmap("recommend", *args, "--set", f"paths.recs={tmp_path / 'one'}")
    run_cmd(["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             str(ROOT / "recommend" / "main.py"), *args, "--set", f"paths.recs={tmp_path / 'two'}"])
    a, _ = recs_table(str(tmp_path / "one"))
    b, rb = recs_table(str(tmp_path / "two"))
    key = [("pid", "ascending"), ("category", "ascending"), ("rank", "ascending")]
    a, b = a.sort_by(key), b.sort_by(key)
    assert a.num_rows == b.num_rows > 0
    for col in ("pid", "category", "rank", "track_uri"):
        assert a[col].to_pylist() == b[col].to_pylist(), col
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    summary = json.loads(storage.read_bytes(rb.path("summary.json")))
    assert set(summary["rows_by_rank"]) == {"0", "1"}


def test_title_model_beats_popularity_on_title_only(trained):
    cfg = load_config(root=str(trained))
    ctx = context.load_context(cfg, need_model=False)
    cases = load_eval(ctx.committed, "val", uri_index(ctx.tracks), categories={"title_only"})
    cases = cases.subset([i for i in range(len(cases)) if cases.name[i]])
    assert len(cases) >= 10
    from musicmap import metrics
    title, _ = ctx.title_model.rank(cases.seeds, cases.name, 500)
    pop, _ = Popularity().fit(ctx.graph).rank(cases.seeds, cases.name, 500)
    nd = [np.mean([metrics.ndcg(r, h) for r, h in zip(x, cases.holdouts)]) for x in (title, pop)]
    assert nd[0] > nd[1] + 0.02, nd
    # an unseen title falls back to popularity
    assert list(ctx.title_model.rank([np.array([], np.int64)], ["zzqx unheard"], 20)[0][0]) == \
        list(Popularity().fit(ctx.graph).rank([np.array([], np.int64)], None, 20)[0][0])


def test_evaluate_reports_model_and_baselines_per_category(trained):
    musicmap("recommend", "--root", str(trained), "--playlists", "test")
    p = musicmap("evaluate", "--root", str(trained))
    for word in ("lightgcn", "popularity", "cooccurrence", "title_only", "Seed system's protocol",
                 "9.90%", "65.76%", "1/log2(i+1)"):
        assert word in p.stdout, word
    m = storage.open_committed(str(trained / "metrics"))
    report = json.loads(storage.read_bytes(m.path("metrics.json")))
    # EASE^R is skipped above baselines.ease_max_tracks (this catalogue is larger), saying so
    assert set(report["methods"]) == {"lightgcn", "popularity", "recent_popularity", "cooccurrence", "rp3beta"}
    assert "ease_max_tracks" in report["tuned"]["ease"]["skipped"]
    for method in report["methods"].values():
        ch = method["challenge"]
        assert {"all", "title_only", "first5"} <= set(ch)
        for k in ("r_precision", "r_precision_artist", "ndcg", "clicks", "precision@20", "hit_rate@20", "recall@20"):
            assert k in ch["all"]
        assert method["seed_protocol"]["cases"] == 300
    assert report["methods"]["lightgcn"]["challenge"]["all"]["ndcg"] > \
        report["methods"]["popularity"]["challenge"]["all"]["ndcg"]
    assert "r_precision_artist" in report["definitions"]
    assert storage.read_bytes(m.path("ndcg.png"))[:4] == b"\x89PNG"


def test_evaluate_follows_k_small_in_table_json_and_charts(trained, tmp_path):
    """evaluate.k_small=10: every @k metric is @10, in metrics.json, the printed table and the charts."""
    musicmap("recommend", "--root", str(trained), "--playlists", "test", "--set", f"paths.recs={tmp_path / 'recs'}")
    p = musicmap("evaluate", "--root", str(trained), "--set", "evaluate.k_small=10", "--set",
                 f"paths.recs={tmp_path / 'recs'}", "--set", f"paths.metrics={tmp_path / 'metrics'}",
                 "--set", "evaluate.baselines=[popularity]")
    assert "P@10" in p.stdout and "HR@10" in p.stdout and "P@20" not in p.stdout.split("seed system")[0]
    m = storage.open_committed(str(tmp_path / "metrics"))
    row = json.loads(storage.read_bytes(m.path("metrics.json")))["methods"]["lightgcn"]["challenge"]["all"]
    assert {"precision@10", "hit_rate@10", "recall@10"} <= set(row) and "precision@20" not in row
    for name in ("precision_at_10", "hit_rate_at_10", "recall_at_10", "r_precision_artist"):
        png = storage.read_bytes(m.path(f"{name}.png"))
        assert png[:4] == b"\x89PNG"


def test_similar_returns_mostly_the_seed_community(trained):
    info = json.loads((trained / "mpd" / "synth_info.json").read_text())
    cat = synth.Catalogue(synth.default_tracks(3000), 24, 7)
    cfg = load_config(root=str(trained))
    uris = context.load_context(cfg, need_model=False).uris.to_pylist()
    vocab = set(uris)
    shares = []
    for comm in info["communities"][:6]:
        # the community's most popular track that made the vocabulary (a command that fails fails)
        seed_uri = next((u for u in comm["top_tracks"] if u in vocab), None)
        if seed_uri is None:
            continue
        p = musicmap("similar", "--root", str(trained), "--track-uri", seed_uri, "--k", "10")
        ids = [int(line.split("|")[1]) for line in p.stdout.splitlines() if line.strip().startswith("Rank")]
        assert len(ids) == 10 and uris.index(seed_uri) not in ids
        same = np.mean([cat.community_of(synth.id_of_uri(uris[i], 7)) == comm["id"] for i in ids])
        shares.append(same)
    assert len(shares) >= 4 and np.mean(shares) > 0.7, shares


def test_similar_explains_unknown_and_ambiguous_names(trained):
    cfg = load_config(root=str(trained))
    tracks = context.load_context(cfg, need_model=False).tracks
    names, artists = tracks["track_name"].to_pylist(), tracks["artist_name"].to_pylist()
    p = musicmap("similar", "--root", str(trained), "--track", "Zzyzx Qwerty", check=False)
    assert p.returncode == 2 and "no track 'Zzyzx Qwerty'" in p.stderr and "Traceback" not in p.stderr
    # a misspelt name lists the closest names of the vocabulary
    known = names[0]
    p = musicmap("similar", "--root", str(trained), "--track", known[:-1] + "x", check=False)
    assert p.returncode == 2 and "closest:" in p.stderr
    closest = p.stderr.split("closest:", 1)[1]
    assert any(f"{n} - " in closest for n in names if n.lower().startswith(known[:-1].lower()))
    # a name several tracks share asks for --artist, and --artist picks the one track
    common = Counter(names).most_common(1)[0][0]
    p = musicmap("similar", "--root", str(trained), "--track", common, check=False)
    assert p.returncode == 2 and "add --artist" in p.stderr
    pairs = Counter(zip(names, artists))
    artist = next(a for (n, a), k in pairs.items() if n == common and k == 1)
    p = musicmap("similar", "--root", str(trained), "--track", common, "--artist", artist)
    assert f"Seed Track: {common} - {artist}" in p.stdout
    # an unknown URI says why it may be missing
    p = musicmap("similar", "--root", str(trained), "--track-uri", "spotify:track:" + "0" * 22, check=False)
    assert p.returncode == 2 and "is not in the catalogue" in p.stderr and "min_playlists" in p.stderr


def test_a_malformed_challenge_set_is_one_line_and_nothing_is_committed(trained, tmp_path):
    good = json.loads((trained / "mpd" / "challenge_set.json").read_text())
    broken = {
        "truncated": (trained / "mpd" / "challenge_set.json").read_text()[:5000],
        "no pid": json.dumps({**good, "playlists": [{"name": "x", "tracks": []}]}),
        "seeds of the wrong type": json.dumps({**good, "playlists": [{"pid": 1, "tracks": "abc"}]}),
        "a pid given twice": json.dumps({**good, "playlists": good["playlists"][:2] + good["playlists"][:1]}),
    }
    for label, text in broken.items():
        path = tmp_path / f"{label.replace(' ', '_')}.json"
        path.write_text(text)
        recs = tmp_path / f"recs-{label.replace(' ', '_')}"
        p = musicmap("recommend", "--root", str(trained), "--playlists", "none",
                     "--set", f"paths.recs={recs}", "--challenge", str(path), check=False)
        assert p.returncode == 2, (label, p.stderr)
        err = p.stderr.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and "Traceback" not in p.stderr, (label, err)
        assert not (recs / "_SUCCESS").exists(), label


def test_evaluate_refuses_recommendations_from_an_older_model(trained, tmp_path):
    """Recommend, then train again (a new committed model), then evaluate: it says what to rerun
    instead of scoring the old model's recommendations; --force scores them anyway."""
    root = tmp_path / "root"
    for d in ("mpd", "graph", "model"):
        shutil.copytree(trained / d, root / d)
    musicmap("recommend", "--root", str(root), "--playlists", "test")
    old = storage.open_committed(str(root / "model"))
    again = storage.StageWriter(str(root / "model"))                 # "musicmap train" again
    shutil.copytree(old.path(), again.path(), dirs_exist_ok=True, ignore=shutil.ignore_patterns(storage.WRITER))
    again.commit({k: v for k, v in old.info.items() if k not in ("version", "committed_at", "history")})
    p = musicmap("evaluate", "--root", str(root), check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert (f"were made from model {old.version}, the committed model is {again.version}: rerun "
            f"`musicmap recommend`") in p.stderr
    assert not storage.exists(str(root / "metrics" / "_SUCCESS"))
    musicmap("evaluate", "--root", str(root), "--force")
    report = storage.read_json(storage.open_committed(str(root / "metrics")).path("metrics.json"))
    assert report["input"]["model_version"] == old.version and report["input"]["forced"]


def test_evaluate_reports_what_made_the_recs_from_one_committed_version(trained, tmp_path, monkeypatch):
    """Recs made with another fold-in than the config's: evaluate reports the recs' own (their
    summary), scores LightGCN alone with it, and opens the committed recs once (a commit between
    two opens would pair one version's provenance with another's lists)."""
    recs = str(tmp_path / "recs")
    musicmap("recommend", "--root", str(trained), "--playlists", "test", "--set", f"paths.recs={recs}",
             "--set", "recommend.foldin=mean")
    cfg = load_config(root=str(trained), overrides=[f"paths.recs={recs}", f"paths.metrics={tmp_path / 'metrics'}",
                                                    "evaluate.baselines=[popularity]"])
    opened, real = [], storage.open_committed
    monkeypatch.setattr(storage, "open_committed",
                        lambda uri, *a: (opened.append(uri) if uri.rstrip("/") == recs else None) or real(uri, *a))
    report = evaluate.run(cfg, "test")
    assert len(opened) == 1
    summary = storage.read_json(real(recs).path("summary.json"))
    assert report["model"]["foldin"] == summary["foldin"] == "mean"
    assert report["model"]["graph_playlists"] == summary["graph_playlists_method"]


def test_evaluate_reads_only_the_rows_it_scores(trained, all_recs, tmp_path):
    """At the MPD's size the graph playlists' lists are most of recs/ (~500M rows): evaluate
    reads the part files of the val/test cases and of the graph playlists under evaluation, and
    of those only its cases' rows. Broken part files of the other graph playlists do not stop it."""
    _, r = all_recs
    recs = tmp_path / "recs"
    shutil.copytree(r.uri, recs)
    folder = recs / r.version
    kinds = {k: sorted(folder.glob(f"part-{k}-*")) for k in ("train", "graphcases", "cases", "challenge")}
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    for part in kinds["train"] + kinds["challenge"]:
        part.write_bytes(b"not parquet: never read")
    musicmap("evaluate", "--root", str(trained), "--set", f"paths.recs={recs}", "--set",
             f"paths.metrics={tmp_path / 'metrics'}", "--set", "evaluate.baselines=[popularity]")
    report = storage.read_json(storage.open_committed(str(tmp_path / "metrics")).path("metrics.json"))
    assert report["graph_playlists"]["served_written"] and report["cases"]["challenge_categories"] > 0
