"""The contract every recommender keeps (recommend/recommenders.py's Recommender), checked for each
on the tiny in-memory world of tests/tiny.py in seconds: ranked ids and scores of the promised
shapes and types, never a seed, no repeats, padding only at the end, scores best first with ties
by track id, any k, playlists without a seed, and the same list whichever batch a playlist is in
(what makes a sharded recommend equal an unsharded one)."""
from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import tiny

from musicmap.recommend.features import FEATURE_NAMES, Sources
from musicmap.recommend.ranker import Ranker
from musicmap.recommend.recommenders import EASE, CoOccurrence, Popularity, RecentPopularity, RP3Beta, TitleModel

SEEDS = [np.array([0, 1]), np.array([8, 9]), np.zeros(0, np.int64), np.array([3]), np.array([2, 6, 10, 11])]
NAMES = ["rock", None, "chill", None, "mix"]


def ranker(ctx) -> Ranker:
    """The re-ranker with a small booster fitted on random features (the contract, not quality)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, len(FEATURE_NAMES))), rng.integers(0, 2, 200)
    booster = lgb.train({"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 1, "num_leaves": 4,
                         "deterministic": True, "num_threads": 1}, lgb.Dataset(x, y, group=[20] * 10), 5)
    artist = np.unique(ctx.tracks["artist_uri"].to_numpy(zero_copy_only=False), return_inverse=True)[1]
    album = np.unique(ctx.tracks["album_uri"].to_numpy(zero_copy_only=False), return_inverse=True)[1]
    src = Sources(ctx.graph, artist, album, ctx.train_modified_at(), ctx.lightgcn(), ctx.title_model,
                  RP3Beta(neighbours=5).fit(ctx.graph), k=6, per_source=4)
    return Ranker(src, booster, chunk=2)


def recommenders() -> dict:
    ctx = tiny.context()
    g, titles = ctx.graph, ctx.title_model
    return {"popularity": Popularity().fit(g), "recent_popularity": RecentPopularity(ctx.train_modified_at()).fit(g),
            "cooccurrence": CoOccurrence(title_model=titles, neighbours=5).fit(g),
            "rp3beta": RP3Beta(alpha=0.5, beta=0.3, neighbours=5, title_model=titles).fit(g),
            "ease": EASE(lam=1.0, title_model=titles).fit(g), "title": TitleModel(tiny.TITLES).fit(g),
            "lightgcn": ctx.lightgcn(), "ranker": ranker(ctx)}


RECOMMENDERS = recommenders()


@pytest.mark.parametrize("name", list(RECOMMENDERS))
def test_every_recommender_keeps_the_contract(name):
    rec = RECOMMENDERS[name]
    for k in (1, 5, tiny.T + 3):                       # a k beyond the catalogue pads
        ids, scores = rec.rank(SEEDS, NAMES, k)
        assert ids.shape == scores.shape == (len(SEEDS), k), name
        assert ids.dtype == np.int64 and scores.dtype == np.float32, name
        for i, (row, sc) in enumerate(zip(ids, scores)):
            valid = row >= 0
            assert not valid[valid.argmin():].any() or valid.all(), (name, i, "padding only at the end")
            assert np.isneginf(sc[~valid]).all() and np.isfinite(sc[valid]).all(), (name, i)
            got = row[valid]
            assert len(set(got.tolist())) == len(got) and not set(got.tolist()) & set(SEEDS[i].tolist()), (name, i)
            assert (got < tiny.T).all(), (name, i)
            s = sc[valid]
            assert (np.diff(s) <= 0).all(), (name, i, "best first")
            tied = np.flatnonzero(np.diff(s) == 0)
            assert (got[tied] < got[tied + 1]).all(), (name, i, "ties by track id")
            if k > tiny.T and name not in ("lightgcn", "ranker"):   # they list what they embed, or propose
                assert len(got) == tiny.T - len(SEEDS[i]), (name, i, "every track but the seeds")


@pytest.mark.parametrize("name", list(RECOMMENDERS))
def test_a_playlists_list_does_not_depend_on_its_batch(name):
    rec = RECOMMENDERS[name]
    together = rec.rank(SEEDS, NAMES, 5)
    for i in range(len(SEEDS)):
        alone = rec.rank([SEEDS[i]], [NAMES[i]], 5)
        assert alone[0][0].tolist() == together[0][i].tolist(), (name, i)
        np.testing.assert_allclose(alone[1][0], together[1][i], rtol=1e-5)
    again = rec.rank(SEEDS, NAMES, 5)
    assert again[0].tolist() == together[0].tolist()         # deterministic
