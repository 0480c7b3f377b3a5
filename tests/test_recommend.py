"""recommend, evaluate and similar on a trained small model (real torchrun for the sharded run)."""
from __future__ import annotations

import gzip
import json
from collections import Counter

import numpy as np
import pyarrow.compute as pc
import pytest

from conftest import ROOT, musicmap, recs_table, run_cmd
from musicmap import schemas, storage, submission, synth
from musicmap.config import load_config
from train import recommend
from train.data import load_eval, uri_index
from train.recommenders import Popularity, TitleModel


@pytest.fixture(scope="module")
def all_recs(trained_small):
    """recs for every playlist (train, val, test) and the challenge set."""
    out = trained_small / "recs_all"
    musicmap("recommend", "--root", str(trained_small), "--playlists", "all", "--set", f"paths.recs={out}",
             "--challenge", str(trained_small / "mpd" / "challenge_set.json"))
    return recs_table(str(out))


def test_k_distinct_tracks_never_a_seed_or_own_track(trained_small, all_recs):
    t, _ = all_recs
    cfg = load_config(root=str(trained_small))
    ctx = recommend.load_context(cfg)
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


def test_submission_passes_the_challenge_rules(trained_small, all_recs):
    _, r = all_recs
    sub = r.path("submission.csv.gz")
    challenge = submission.read_challenge(str(trained_small / "mpd" / "challenge_set.json"))
    assert submission.validate_submission(sub, challenge) == []
    lines = [ln for ln in gzip.decompress(storage.read_bytes(sub)).decode().splitlines()
             if ln and not ln.startswith("#")]
    assert lines[0] == "team_info,musicmap,musicmap@example.com"
    assert len(lines) == 1 + 200 and all(len(ln.split(",")) == 501 for ln in lines[1:])


def test_validator_catches_each_broken_rule(trained_small, all_recs, tmp_path):
    _, r = all_recs
    challenge = submission.read_challenge(str(trained_small / "mpd" / "challenge_set.json"))
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


def test_sharded_recommend_equals_unsharded(trained_small, tmp_path):
    args = ["--root", str(trained_small), "--playlists", "test"]
    musicmap("recommend", *args, "--set", f"paths.recs={tmp_path / 'one'}")
    run_cmd(["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             str(ROOT / "train" / "recommend.py"), *args, "--set", f"paths.recs={tmp_path / 'two'}"])
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


def test_title_model_beats_popularity_on_title_only(trained_small):
    cfg = load_config(root=str(trained_small))
    ctx = recommend.load_context(cfg, need_model=False)
    cases = load_eval(ctx.committed, "val", uri_index(ctx.tracks), categories={"title_only"})
    cases = cases.subset([i for i in range(len(cases)) if cases.name[i]])
    assert len(cases) >= 10
    from musicmap import metrics
    title = ctx.title_model.rank(cases.seeds, cases.name, 500)
    pop = Popularity().fit(ctx.graph).rank(cases.seeds, cases.name, 500)
    nd = [np.mean([metrics.ndcg(r, h) for r, h in zip(x, cases.holdouts)]) for x in (title, pop)]
    assert nd[0] > nd[1] + 0.02, nd
    # an unseen title falls back to popularity
    assert list(ctx.title_model.rank([np.array([], np.int64)], ["zzqx unheard"], 20)[0]) == \
        list(Popularity().fit(ctx.graph).rank([np.array([], np.int64)], None, 20)[0])
    assert isinstance(ctx.title_model, TitleModel)


def test_evaluate_reports_model_and_baselines_per_category(trained_small):
    musicmap("recommend", "--root", str(trained_small), "--playlists", "test")
    p = musicmap("evaluate", "--root", str(trained_small))
    for word in ("lightgcn", "popularity", "cooccurrence", "title_only", "Seed system's protocol",
                 "9.90%", "65.76%", "1/log2(i+1)"):
        assert word in p.stdout, word
    m = storage.open_committed(str(trained_small / "metrics"))
    report = json.loads(storage.read_bytes(m.path("metrics.json")))
    assert set(report["methods"]) == {"lightgcn", "popularity", "recent_popularity", "cooccurrence"}
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


def test_similar_returns_mostly_the_seed_community(trained_small):
    info = json.loads((trained_small / "mpd" / "synth_info.json").read_text())
    cat = synth.Catalog(synth.default_tracks(3000), 24, 7)
    shares = []
    for comm in info["communities"][:6]:
        seed_uri = comm["top_tracks"][0]
        p = musicmap("similar", "--root", str(trained_small), "--track-uri", seed_uri, "--k", "10", check=False)
        if p.returncode:
            continue  # the top track may have been filtered out of a small community
        cfg = load_config(root=str(trained_small))
        ctx = recommend.load_context(cfg)
        uris = ctx.uris.to_pylist()
        ids = [int(line.split("|")[1]) for line in p.stdout.splitlines() if line.strip().startswith("Rank")]
        assert len(ids) == 10
        same = np.mean([cat.community_of(synth.id_of_uri(uris[i], 7)) == comm["id"] for i in ids])
        shares.append(same)
    assert len(shares) >= 4 and np.mean(shares) > 0.7, shares


def test_similar_explains_unknown_and_ambiguous_names(trained_small):
    p = musicmap("similar", "--root", str(trained_small), "--track", "Zzyzx Qwerty", check=False)
    assert p.returncode == 2 and "no track 'Zzyzx Qwerty'" in p.stderr and "Traceback" not in p.stderr
    cfg = load_config(root=str(trained_small))
    names = Counter(recommend.load_context(cfg, need_model=False).tracks["track_name"].to_pylist())
    common = names.most_common(1)[0][0]
    p = musicmap("similar", "--root", str(trained_small), "--track", common, check=False)
    assert p.returncode == 2 and "add --artist" in p.stderr


def test_a_malformed_challenge_set_is_one_line_and_nothing_is_committed(trained_small, tmp_path):
    good = json.loads((trained_small / "mpd" / "challenge_set.json").read_text())
    broken = {
        "truncated": (trained_small / "mpd" / "challenge_set.json").read_text()[:5000],
        "no pid": json.dumps({**good, "playlists": [{"name": "x", "tracks": []}]}),
        "seeds of the wrong type": json.dumps({**good, "playlists": [{"pid": 1, "tracks": "abc"}]}),
        "a pid given twice": json.dumps({**good, "playlists": good["playlists"][:2] + good["playlists"][:1]}),
    }
    for label, text in broken.items():
        path = tmp_path / f"{label.replace(' ', '_')}.json"
        path.write_text(text)
        recs = tmp_path / f"recs-{label.replace(' ', '_')}"
        p = musicmap("recommend", "--root", str(trained_small), "--playlists", "none",
                     "--set", f"paths.recs={recs}", "--challenge", str(path), check=False)
        assert p.returncode == 2, (label, p.stderr)
        err = p.stderr.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and "Traceback" not in p.stderr, (label, err)
        assert not (recs / "_SUCCESS").exists(), label
