"""Seeds too rare for LightGCN to embed (in fewer than model.embed_min_playlists train playlists):
LightGCN says nothing of such a playlist (never the zero vector or an untrained one), and the
same fallback serves it everywhere, on the tiny world of tests/tiny.py."""
from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch

from musicmap.api import MusicMap
from musicmap.errors import InputError
from musicmap.recommend.features import COL, Sources
from musicmap.recommend.graph_playlists import rank_graph_playlists
from musicmap.topk import topk

RARE = np.array([8, 9])                   # in the catalogue (p6), in one train playlist each
LIGHTGCN_FEATURES = [COL[f] for f in ("lightgcn_score", "lightgcn_gap", "lightgcn_rank")]


def sources(ctx) -> Sources:
    groups = lambda col: np.unique(ctx.tracks[col].to_numpy(zero_copy_only=False), return_inverse=True)[1]  # noqa: E731
    return Sources(ctx.graph, groups("artist_uri"), groups("album_uri"), ctx.train_modified_at(), ctx.lightgcn(),
                   ctx.title_model, None, k=5, per_source=4)


def test_a_case_with_no_embedded_seed_has_no_lightgcn_candidates_or_features():
    src = sources(tiny.context())
    seeds = [RARE, np.array([0, 8])]
    scored = src.scored(seeds, np.array([8, 9, tiny.T, tiny.T + 8]), np.array([True, True]))["lightgcn"]
    assert (scored.top[0] == -1).all() and np.isnan(scored.best[0])      # proposes nothing
    assert (scored.top[1] >= 0).all() and np.isfinite(scored.best[1])
    block = src.candidates(seeds, [None, None])
    assert np.isnan(block.x[0][:, LIGHTGCN_FEATURES]).all()               # missing, not zero
    embedded = (block.cand[1] >= 0) & (block.cand[1] < tiny.EMBEDDED)
    assert embedded.any() and np.isfinite(block.x[1][embedded][:, LIGHTGCN_FEATURES]).all()
    # co-occurrence still proposes what the rare seeds sit beside (t6, in p6 with them)
    assert 6 in block.cand[0]
    # a title-only case has no seed at all: the seed-based features are missing too
    title_only = src.candidates([np.zeros(0, np.int64)], ["rock"])
    assert np.isnan(title_only.x[0][:, LIGHTGCN_FEATURES]).all()


def test_lightgcn_alone_hands_rare_seeds_to_its_fallback():
    """Without a measurement the title model serves them; when fit-ranker measured co-occurrence
    best on such validation cases, co-occurrence does."""
    ctx = tiny.context()
    ctx.fitted = {"no_vector_cases": {"chosen": "cooccurrence"}}
    rec = ctx.lightgcn()
    ids, _ = rec.rank([RARE], [None], 5)
    assert ids[0][0] == 6                              # what the rare seeds sit beside, first
    fallback = ctx.fallback()
    assert fallback.name == "cooccurrence"
    assert ids[0].tolist() == fallback.rank([RARE], [None], 5)[0][0].tolist()
    seeds = [RARE, np.array([0, 8]), np.zeros(0, np.int64)]
    assert rec.served_by(seeds) == ["cooccurrence", "lightgcn", "title"]
    ids, _ = rec.rank(seeds, [None, None, "rock"], 5)
    assert ids[2].tolist() == ctx.title_model.rank([seeds[2]], ["rock"], 5)[0][0].tolist()
    plain = tiny.context().lightgcn()
    assert plain.served_by([RARE]) == ["title"]
    assert plain.rank([RARE], ["rock"], 5)[0][0].tolist() == ctx.title_model.rank([RARE], ["rock"], 5)[0][0].tolist()


def test_a_graph_playlist_with_no_embedded_track_is_served_by_the_fallback():
    ctx = tiny.context()
    ranked, _ = rank_graph_playlists(ctx, np.array([tiny.RARE_ONLY, 0]), 5, "lightgcn")
    # t6 sits in p4 beside t1, t3, t4, t5: those first (t3-t5 tie, by id), then by popularity
    assert ranked[0].tolist() == [3, 4, 5, 1, 0]
    own = tiny.PLAYLISTS[tiny.RARE_ONLY]
    want = ctx.graph_fallback().rank([np.array(own)], [tiny.TITLES[tiny.RARE_ONLY]], 5)[0][0]
    assert ranked[0].tolist() == want.tolist()
    # a playlist with embedded tracks keeps its trained vector
    q = torch.from_numpy(ctx.model.playlists[[0]])
    trained = topk(q, torch.from_numpy(ctx.model.tracks), 5, exclude=[np.array(tiny.PLAYLISTS[0])])[0][0]
    assert ranked[1].tolist() == trained.tolist()


def test_the_api_says_which_seeds_it_left_out_and_what_served():
    mm = MusicMap(tiny.context())
    with pytest.warns(UserWarning, match="outside the catalogue left out: spotify:track:doesnotexist"):
        recs = mm.recommend(seed_tracks=["spotify:track:doesnotexist", "spotify:track:t0"], k=3)
    assert recs.left_out == ["spotify:track:doesnotexist"] and recs.method == "lightgcn"
    assert "left out" in str(recs)
    with pytest.raises(InputError, match="no seed is in the catalogue .*doesnotexist.* no title"), \
            pytest.warns(UserWarning):
        mm.recommend(seed_tracks=["spotify:track:doesnotexist"], k=3)
    with pytest.warns(UserWarning):
        assert mm.recommend(seed_tracks=["spotify:track:doesnotexist"], title="rock", k=3).method == "title"
    rare = mm.recommend(seed_tracks=["spotify:track:t8", "spotify:track:t9"], k=3)
    assert rare.method == "title" and rare.uris == mm.recommend(title="zz unheard", k=3).uris
    mm.ctx.fitted = {"no_vector_cases": {"chosen": "cooccurrence"}}
    rare = mm.recommend(seed_tracks=["spotify:track:t8", "spotify:track:t9"], k=3)
    assert rare.method == "cooccurrence" and rare.uris[0] == "spotify:track:t6"
