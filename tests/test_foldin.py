"""musicmap.train.foldin: how a playlist outside the graph gets a vector from its seeds, each mode
against a hand computation, and a playlist's vector independent of its batch."""
from __future__ import annotations

import numpy as np
import torch

from musicmap.train.foldin import FoldIn, optimize_queries, seed_queries


def test_lightgcn_foldin_query():
    foldin = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    q = seed_queries([np.array([0, 1]), np.array([], np.int64)], foldin, foldin, "lightgcn")
    np.testing.assert_allclose(q.numpy(), [[1 / np.sqrt(2), 2 / np.sqrt(2)], [0, 0]])
    q = seed_queries([np.array([0, 2])], foldin, foldin, "mean")
    np.testing.assert_allclose(q.numpy(), [[2.0, 1.5]])


def test_optimized_foldin_first_step_is_hand_computed():
    tracks = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    rows, cols = torch.tensor([0]), torch.tensor([0])             # one playlist, seed track 0
    q0 = torch.tensor([[0.5, 0.2]])
    lr, l2, n_neg = 0.1, 0.01, 4
    neg = torch.randint(0, 3, (n_neg,), generator=torch.Generator().manual_seed(5))
    # loss = mean_j softplus(q.t_j - q.t_0) + l2 |q|^2, so
    # grad = mean_j sigmoid(q.(t_j - t_0)) (t_j - t_0) + 2 l2 q
    diff = tracks[neg] - tracks[0]
    grad = (torch.sigmoid(diff @ q0[0])[:, None] * diff).mean(0) + 2 * l2 * q0[0]
    # Adam's first step moves each coordinate by lr against the sign of its gradient
    expected = q0[0] - lr * torch.sign(grad)
    got = optimize_queries(q0, tracks, rows, cols, steps=1, lr=lr, l2=l2, negatives=n_neg, random_seed=5)
    torch.testing.assert_close(got[0], expected, atol=1e-6, rtol=0)
    assert torch.equal(optimize_queries(q0, tracks, rows, cols, steps=0), q0)


def test_optimized_foldin_of_a_playlist_does_not_depend_on_its_batch():
    g = torch.Generator().manual_seed(0)
    tracks = torch.randn(50, 8, generator=g)
    seeds = [np.array([1, 2, 3]), np.array([4]), np.array([], np.int64), np.array([7, 9])]
    spec = FoldIn("optimized", steps=5)
    together = seed_queries(seeds, tracks, tracks, spec)
    alone = torch.cat([seed_queries([s], tracks, tracks, spec) for s in seeds])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)
    assert torch.all(together[2] == 0)           # no seed: the zero vector (the title model serves it)
