"""LightGCN's pieces against expectations derived without the code under test: the normalised
adjacency by hand, the fold-in by adding the new playlist to the graph and propagating it with
plain dense matrices, the BPR loss and its L2 term on a hand-worked batch, the title model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from musicmap.graph import Graph
from musicmap.mpd import normalize_title
from musicmap.recommend.recommenders import TitleModel
from musicmap.train.foldin import foldin_vectors, seed_queries
from musicmap.train.model import LightGCN, bpr_loss

# 2 playlists, 3 tracks: p0 = {t0, t1}, p1 = {t1, t2}; node ids: p0 0, p1 1, t0 2, t1 3, t2 4
TINY = Graph(2, 3, np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2]), np.array([1.0, 3.0, 1.0, 1.0], np.float32))


def test_adjacency_is_d_to_the_minus_half_a_d_to_the_minus_half_by_hand():
    # degrees: p0 2, p1 2, t0 1, t1 2, t2 1
    s2, h = 1 / np.sqrt(2), 0.5
    expected = np.zeros((5, 5))
    for (p, t), v in {(0, 2): s2, (0, 3): h, (1, 3): h, (1, 4): s2}.items():
        expected[p, t] = expected[t, p] = v
    np.testing.assert_allclose(TINY.adjacency(False).to_dense().numpy(), expected, atol=1e-7)


def test_edge_weights_enter_the_adjacency_as_documented():
    # use_edge_weight: A holds w, degrees are weighted: p0 4, p1 2, t0 1, t1 4, t2 1
    expected = np.zeros((5, 5))
    for (p, t), v in {(0, 2): 1 / np.sqrt(4 * 1), (0, 3): 3 / np.sqrt(4 * 4), (1, 3): 1 / np.sqrt(2 * 4),
                      (1, 4): 1 / np.sqrt(2 * 1)}.items():
        expected[p, t] = expected[t, p] = v
    np.testing.assert_allclose(TINY.adjacency(True).to_dense().numpy(), expected, atol=1e-7)
    assert not np.allclose(TINY.adjacency(True).to_dense().numpy(), TINY.adjacency(False).to_dense().numpy())


def _dense_graph(rng, P=6, T=8, per=4):
    rows = [(p, t) for p in range(P) for t in sorted(rng.choice(T, per, replace=False))]
    pl, tr = np.array(rows).T
    return Graph(P, T, pl, tr, np.ones(len(pl), np.float32))


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_foldin_is_the_new_playlist_propagated_as_a_node(layers):
    """A new playlist joined to seeds S, its layer-0 vector 0 and the tracks' degrees unchanged:
    LightGCN gives it e = mean_k x^(k); here that is computed with numpy on the graph with the
    node added (its row 1/sqrt(|S| d_t)), and must equal the fold-in of train.scoring."""
    rng = np.random.default_rng(layers)
    g = _dense_graph(rng)
    P, T, N = g.num_playlists, g.num_tracks, g.num_nodes
    A = np.zeros((N, N))
    A[g.playlist, P + g.track] = A[P + g.track, g.playlist] = 1.0
    d = A.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1)), 0.0)    # a track in no playlist: a zero row
    A_hat = A * np.outer(inv, inv)
    seeds = np.flatnonzero(d[P:] > 0)[[0, 2, 3]]        # three tracks of the graph
    B = np.zeros((N + 1, N + 1))                       # the graph with the new node N
    B[:N, :N] = A_hat
    B[N, P + seeds] = 1 / np.sqrt(len(seeds) * d[P + seeds])
    x0 = rng.standard_normal((N + 1, 5))
    x0[N] = 0.0
    xs = [x0]
    for _ in range(layers):
        xs.append(B @ xs[-1])
    expected = np.mean(xs, 0)[N]

    model = LightGCN(P, T, 5, layers)
    model.embedding.weight.data = torch.from_numpy(x0[:N]).float()
    with torch.no_grad():
        outs = model.layer_outputs(g.adjacency(False))
    f = foldin_vectors(outs, torch.from_numpy(d[P:]).float(), P)
    got = seed_queries([seeds], f, torch.stack(outs).mean(0)[P:], "lightgcn")[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_foldin_of_one_seed_by_hand():
    # L = 1: e = (0 + x_t / sqrt(1 * d_t)) / 2; t1 has degree 2
    model = LightGCN(2, 3, 2, 1)
    w = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [4.0, 6.0], [3.0, 1.0]])
    model.embedding.weight.data = w
    with torch.no_grad():
        outs = model.layer_outputs(TINY.adjacency(False))
    f = foldin_vectors(outs, torch.tensor([1.0, 2.0, 1.0]), 2)
    got = seed_queries([np.array([1])], f, f, "lightgcn")[0]
    torch.testing.assert_close(got, torch.tensor([4.0, 6.0]) / np.sqrt(2) / 2)


def test_bpr_loss_and_its_l2_term_on_a_hand_worked_batch():
    model = LightGCN(2, 3, 2, 0)                        # no layers: final = layer 0
    model.embedding.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    adj = TINY.adjacency(False)
    pos, neg, reg = model(adj, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([[2], [0]]))
    # p0.t0 = 2, p0.t2 = 1; p1.t1 = 1, p1.t0 = 0
    torch.testing.assert_close(pos, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(neg, torch.tensor([[1.0], [0.0]]))
    # L2 = 1/2 (|p0|^2 + |p1|^2 + |t0|^2 + |t1|^2 + |t2|^2 + |t0|^2) = 1/2 (1 + 1 + 4 + 1 + 2 + 4)
    torch.testing.assert_close(reg, torch.tensor(6.5))
    # loss = mean(softplus(1 - 2), softplus(0 - 1)) + l2 * reg / B
    expected = (np.log1p(np.exp(-1.0)) * 2) / 2 + 0.1 * 6.5 / 2
    torch.testing.assert_close(bpr_loss(pos, neg, reg, 0.1), torch.tensor(expected, dtype=torch.float32))


def test_title_model_scores_by_the_share_of_same_title_playlists():
    # titles: "Rock", "rock!!" (both normalise to "rock") and "Jazz"; p0 = {t0, t1}, p1 = {t0}, p2 = {t2}
    g = Graph(3, 3, np.array([0, 0, 1, 2]), np.array([0, 1, 0, 2]), np.ones(4, np.float32))
    tm = TitleModel(["Rock", "rock!!", "Jazz"]).fit(g)
    pop = np.array([2, 1, 1]) / 2 * 1e-3                # popularity, a tie-breaker below any share
    np.testing.assert_allclose(tm.scores("ROCK 🔥"), pop + [1.0, 0.5, 0.0])
    np.testing.assert_allclose(tm.scores("jazz"), pop + [0.0, 0.0, 1.0])
    np.testing.assert_allclose(tm.scores("never seen"), pop)
    assert list(tm.rank([np.array([0])], ["Rock"], 2)[0][0]) == [1, 2]   # t1 (share 0.5), then by popularity


@pytest.mark.parametrize("raw, norm", [
    ("Road Trip", "road trip"), ("  ROAD   trip!!  ", "road trip"), ("Café del Mar", "cafe del mar"),
    ("Summer 🔥🔥", "summer"), ("rock_n_roll", "rock n roll"), ("¡Fiesta!", "fiesta"), ("", ""), (None, ""),
    ("Ünïcödé", "unicode")])
def test_normalize_title(raw, norm):
    assert normalize_title(raw) == norm
