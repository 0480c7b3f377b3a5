"""train.scoring.topk against a full sort, on both selection paths and the edge cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from musicmap.topk import topk
from musicmap.train.foldin import seed_queries


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


def test_lightgcn_foldin_query():
    foldin = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    q = seed_queries([np.array([0, 1]), np.array([], np.int64)], foldin, foldin, "lightgcn")
    np.testing.assert_allclose(q.numpy(), [[1 / np.sqrt(2), 2 / np.sqrt(2)], [0, 0]])
    q = seed_queries([np.array([0, 2])], foldin, foldin, "mean")
    np.testing.assert_allclose(q.numpy(), [[2.0, 1.5]])
