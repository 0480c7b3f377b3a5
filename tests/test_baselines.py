"""The baselines (musicmap/recommend/recommenders.py: RP3beta, EASE^R, item co-occurrence, the title
model) against scores worked out by hand on a five-track graph, and their tuning on validation."""
from __future__ import annotations

from math import sqrt

import numpy as np
import pytest
import tiny
import torch

from musicmap.cases import EvalCases
from musicmap.config import load_config
from musicmap.graph import Graph
from musicmap.recommend import baselines
from musicmap.recommend.recommenders import EASE, CoOccurrence, RP3Beta, TitleModel
from musicmap.topk import topk_rows

# p0 = {t0, t1}, p1 = {t0, t1, t2}, p2 = {t1, t2, t3}, p3 = {t3, t4}; t5 is in the catalogue with
# no train edge (degree 0). Track degrees: t0 2, t1 3, t2 2, t3 2, t4 1, t5 0; playlists 2, 3, 3, 2.
EDGES = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 3), (3, 4)]
GRAPH = Graph(4, 6, np.array([p for p, _ in EDGES]), np.array([t for _, t in EDGES]),
              np.ones(len(EDGES), np.float32))


def scores_of(rec, seeds) -> np.ndarray:
    return rec.scores([np.array(seeds)]).numpy()[0]


def test_rp3beta_alpha_one_beta_zero_by_hand():
    # W[i, j] = Σ_u (1/d_i)(1/d_u) over the playlists u holding both
    rec = RP3Beta(alpha=1.0, beta=0.0, neighbours=10).fit(GRAPH)
    np.testing.assert_allclose(scores_of(rec, [0]), [0, (1 / 2) * (1 / 2 + 1 / 3), (1 / 2) * (1 / 3), 0, 0, 0],
                               atol=1e-7)
    # t4 reaches t3 through p3 only: (1/1)(1/2); t0 as above
    s = scores_of(rec, [0, 4])
    np.testing.assert_allclose(s[[1, 2, 3]], [5 / 12, 1 / 6, 1 / 2], atol=1e-7)
    ids, _ = rec.rank([np.array([0, 4])], None, k=4)
    assert ids[0].tolist() == [3, 1, 2, 5]         # t5 (never played) fills the list last


def test_rp3beta_alpha_and_beta_by_hand():
    rec = RP3Beta(alpha=0.5, beta=0.5, neighbours=10).fit(GRAPH)
    # W[t1, t2] = (1/3)^.5 [(1/3)^.5 (p1) + (1/3)^.5 (p2)] / 2^.5; W[t1, t0] = (1/3)^.5 [(1/2)^.5 + (1/3)^.5] / 2^.5
    s = scores_of(rec, [1])
    assert s[2] == pytest.approx(sqrt(1 / 3) * 2 * sqrt(1 / 3) / sqrt(2), rel=1e-6)
    assert s[0] == pytest.approx(sqrt(1 / 3) * (sqrt(1 / 2) + sqrt(1 / 3)) / sqrt(2), rel=1e-6)
    assert s[3] == pytest.approx(sqrt(1 / 3) * sqrt(1 / 3) / sqrt(2), rel=1e-6)
    assert s[1] == 0 and np.isfinite(s).all()       # never itself; degree 0 gives 0, not inf


def test_rp3beta_keeps_the_top_neighbours_of_each_track():
    rec = RP3Beta(alpha=1.0, beta=0.0, neighbours=1).fit(GRAPH)
    np.testing.assert_allclose(scores_of(rec, [0]), [0, 5 / 12, 0, 0, 0, 0], atol=1e-7)
    assert (np.diff(rec.W.indptr) <= 1).all()


def test_ease_closed_form_by_hand():
    # two tracks: t0 in 3 playlists, t1 in 2, together in 1; λ = 1:
    # B[1, 0] = (a1·a0) / (a1·a1 + λ) = 1/3 and B[0, 1] = 1/4 (each column a ridge regression)
    g = Graph(4, 2, np.array([0, 1, 2, 2, 3]), np.array([0, 0, 0, 1, 1]), np.ones(5, np.float32))
    rec = EASE(lam=1.0).fit(g)
    np.testing.assert_allclose(rec.B.numpy(), [[0, 1 / 4], [1 / 3, 0]], atol=1e-6)
    # on the five-track graph: the KKT conditions of its objective hold off the diagonal
    rec = EASE(lam=2.0).fit(GRAPH)
    A = np.zeros((4, 6))
    A[tuple(np.array(EDGES).T)] = 1
    G = A.T @ A
    residual = (G + 2.0 * np.eye(6)) @ rec.B.numpy() - G
    np.testing.assert_allclose(residual[~np.eye(6, dtype=bool)], 0, atol=1e-5)
    assert np.diag(rec.B.numpy()).tolist() == [0] * 6


def test_ease_refuses_a_catalogue_above_its_limit():
    with pytest.raises(EASE.TooLarge, match="ease_max_tracks"):
        EASE(max_tracks=5).fit(GRAPH)


def test_title_only_playlists_go_to_the_title_model():
    titles = TitleModel(["rock", "rock", "chill", "chill"]).fit(GRAPH)
    rec = RP3Beta(title_model=titles).fit(GRAPH)
    ids, _ = rec.rank([np.zeros(0, np.int64)], ["Chill"], k=3)
    assert ids[0].tolist() == titles.rank([np.zeros(0, np.int64)], ["Chill"], 3)[0][0].tolist()


def test_tuning_picks_the_grid_point_with_the_best_validation_ndcg():
    # validation: seeds t4, held out t3 (t4 only ever sits beside t3); and seeds t0, held out t2
    val = EvalCases(np.array([10, 11]), ["first5"] * 2, [None] * 2, [np.array([4]), np.array([0])],
                    [[], []], [np.array([3]), np.array([2])], [[], []], [[], []])
    bc = load_config(overrides=["baselines.rp3beta_alpha=[0.5, 1.0]", "baselines.rp3beta_beta=[0.0, 1.0]",
                                "baselines.ease_lambda=[1.0]", "baselines.ease_max_tracks=5"]).baselines
    chosen = baselines.tune(GRAPH, val, bc, k=5)
    assert len(chosen["rp3beta"]["grid"]) == 4
    best = max(chosen["rp3beta"]["grid"], key=lambda p: p["val_ndcg"])
    assert chosen["rp3beta"]["val_ndcg"] == best["val_ndcg"]
    # alpha 1, beta 0: t4 -> [t3, ...] (NDCG 1); t0 -> [t1, t2, ...] (t2 second: 1 / log2(3))
    point = next(p for p in chosen["rp3beta"]["grid"] if p["alpha"] == 1.0 and p["beta"] == 0.0)
    assert point["val_ndcg"] == pytest.approx((1 + 1 / np.log2(3)) / 2)
    assert "skipped" in chosen["ease"]
    assert baselines.fitted(tiny.context(), "ease", chosen) is None


def test_rp3beta_shared_walk_and_partial_rows_equal_separate_fits():
    # tuning fits every beta of an alpha from one walk, and only the rows its cases' seeds need
    betas = [0.0, 0.5, 1.0]
    shared = RP3Beta(alpha=0.5, neighbours=2).fit_betas(GRAPH, betas, rows=np.array([3, 1]))
    for beta, rec in zip(betas, shared):
        alone = RP3Beta(alpha=0.5, beta=beta, neighbours=2).fit(GRAPH)
        np.testing.assert_allclose(rec.W[[1, 3]].toarray(), alone.W[[1, 3]].toarray(), rtol=1e-6)
        assert rec.W[[0, 2, 4, 5]].nnz == 0 and rec.beta == beta


def test_cooccurrence_is_the_cosine_of_shared_playlists_by_hand():
    # C[s, t] / sqrt(n_s n_t) off the diagonal: t0 and t1 share p0 and p1 (n 2 and 3)
    rec = CoOccurrence().fit(GRAPH)
    np.testing.assert_allclose(scores_of(rec, [0]), [0, 2 / sqrt(6), 1 / 2, 0, 0, 0], atol=1e-7)
    seeds = [np.array([0, 0, 4]), np.array([], np.int64), np.array([2])]   # a repeated seed counts once
    np.testing.assert_allclose(rec.sparse_scores(seeds).toarray()[0], scores_of(rec, [0]) + scores_of(rec, [4]),
                               atol=1e-7)
    assert scores_of(rec, [4])[3] == pytest.approx(1 / sqrt(2))
    # each track keeps its `neighbours` most co-occurring tracks: t3 meets t1, t2 (p2) and t4 (p3)
    # once each, and the most popular, t1, stays; t0 and t2 meet t1 twice, t0 stays
    one = CoOccurrence(neighbours=1).fit(GRAPH)
    np.testing.assert_allclose(scores_of(one, [3]), [0, 1 / sqrt(6), 0, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(scores_of(one, [1]), [2 / sqrt(6), 0, 0, 0, 0, 0], atol=1e-7)


def test_the_title_models_top_k_is_the_top_k_of_its_scores():
    """rank() looks only at the title's tracks and the most popular ones: the same list as the
    top k of the dense scores, for a known title, an unknown one and none."""
    titles = TitleModel(["rock", "rock", "chill", "chill"]).fit(GRAPH)
    for name, seeds in (("Rock", [1]), ("chill", []), ("unheard of", [0]), (None, [2, 3])):
        s = np.array(seeds, np.int64)
        dense = topk_rows(torch.from_numpy(titles.scores(name))[None], 4, [s])
        ids, scores = titles.rank([s], [name], 4)
        assert ids[0].tolist() == dense[0][0].tolist(), name
        np.testing.assert_allclose(scores[0], dense[1][0], rtol=1e-6)
