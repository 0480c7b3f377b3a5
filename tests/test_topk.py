"""musicmap.topk, the one top-k: against a full sort on both selection paths, the edge cases, and
the one tie rule (score, then id) that every method follows."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from musicmap.graph import Graph
from musicmap.recommend.features import Block
from musicmap.recommend.ranker import order_block
from musicmap.recommend.recommenders import (
    EASE,
    CoOccurrence,
    LightGCNRecommender,
    Popularity,
    RecentPopularity,
    RP3Beta,
    TitleModel,
)
from musicmap.topk import topk, topk_rows, topk_sparse
from musicmap.train.export import TrainedModel


def naive(q, items, k, exclude):
    s = (q @ items.T).astype(np.float64)
    for i, ex in enumerate(exclude):
        s[i, ex] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


@pytest.mark.parametrize("T", [64_000, 64_037, 63_999, 1_000])   # two-level at >= 64,000 (k=500), + a remainder
def test_topk_equals_a_full_sort(T):
    rng = np.random.default_rng(T)
    items = rng.standard_normal((T, 16)).astype(np.float32)
    q = rng.standard_normal((37, 16)).astype(np.float32)
    exclude = [rng.choice(T, size=int(rng.integers(0, 30)), replace=False) for _ in range(37)]
    ix, s = topk(torch.from_numpy(q), torch.from_numpy(items), 500, exclude=exclude, chunk=16)
    ref_s, ref_ix = naive(q, items, 500, exclude)
    np.testing.assert_allclose(s, ref_s, rtol=1e-4, atol=1e-4)
    for i in range(37):
        assert len(set(ix[i])) == 500 and not set(ix[i]) & set(exclude[i].tolist())
        assert (np.diff(s[i]) <= 1e-6).all()
        # the same items (ties aside): every returned item scores at least the reference's k-th
        np.testing.assert_allclose(np.sort((q[i] @ items[ix[i]].T)), np.sort(ref_s[i]), rtol=1e-4, atol=1e-4)


def test_fewer_candidates_than_k_are_padded():
    items = torch.eye(4)
    ix, s = topk(torch.ones(2, 4), items, 6, exclude=[np.array([0]), np.array([0, 1, 2, 3])])
    assert set(ix[0][:3]) == {1, 2, 3} and list(ix[0][3:]) == [-1] * 3 and np.isneginf(s[0, 3:]).all()
    assert (ix[1] == -1).all()
    ix, s = topk(torch.ones(0, 4), items, 3)
    assert s.shape == (0, 3)


# ------------------------------------------------------------------ one tie rule: score, then id

def test_topk_rows_breaks_ties_by_the_lower_id_at_the_cut_and_inside():
    W = 70_000                                   # wide enough for the two-level selection
    s = torch.zeros(3, W)
    s[0, 5000:] = 1.0                            # 65,000 equal best scores
    s[1, ::7] = 2.0
    s[1, 3] = 3.0
    ids, scores = topk_rows(s.clone(), 50, [np.array([5001]), np.array([0]), np.zeros(0, np.int64)])
    assert ids[0].tolist() == [5000] + list(range(5002, 5051))
    assert ids[1].tolist() == [3] + list(range(7, 7 * 50, 7))
    assert ids[2].tolist() == list(range(50)) and (scores[2] == 0).all()
    m = sp.csr_matrix(s.numpy()[:2])
    assert topk_sparse(m, 50, [np.array([5001]), np.array([0])])[0].tolist() == ids[:2].tolist()


def test_every_method_ranks_equal_scores_by_track_id():
    """One playlist holding every track: each seed's neighbours, popularity, titles and equal
    vectors all tie, and every method lists them by track id (never a seed)."""
    def one_playlist(T):
        return Graph(1, T, np.zeros(T, np.int64), np.arange(T), np.ones(T, np.float32))
    big, small = one_playlist(7000), one_playlist(300)
    seeds, want = [np.array([0])], list(range(1, 51))
    vec = np.ones((7000, 4), np.float32)
    methods = {"cooccurrence": CoOccurrence().fit(big), "rp3beta": RP3Beta(neighbours=200).fit(big),
               "popularity": Popularity().fit(big), "recent": RecentPopularity(np.array([1])).fit(big),
               "title": TitleModel(["mix"]).fit(big), "ease": EASE(lam=1.0).fit(small),
               "lightgcn": LightGCNRecommender(TrainedModel(vec[:1], vec, vec, {}, "v"))}
    for name, rec in methods.items():
        assert rec.rank(seeds, ["mix"], 50)[0][0].tolist() == want, name
    block = Block(np.arange(1, 200)[None], np.zeros((1, 199, 2), np.float32), np.full((1, 50), -1))
    assert order_block(block, lambda x: np.zeros(len(x)), 50)[0][0].tolist() == want
