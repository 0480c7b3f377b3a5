"""Top-K scoring shared by validation, the recommend job and the evaluation.

    q = seed_queries(seeds, foldin, tracks_final, mode="lightgcn")    # (n, d)
    scores, idx = topk(q, tracks_final, k=500, exclude=seeds, chunk=1024)

Memory is bounded by chunk x T scores at a time.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _flat(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, values) of a ragged list of int arrays."""
    lens = np.fromiter((len(x) for x in lists), np.int64, len(lists))
    rows = np.repeat(np.arange(len(lists)), lens)
    vals = np.concatenate(lists).astype(np.int64) if len(lists) and lens.sum() else np.zeros(0, np.int64)
    return rows, vals


@torch.no_grad()
def seed_queries(seeds: list[np.ndarray], foldin: Tensor, tracks_final: Tensor,
                 mode: str = "lightgcn") -> Tensor:
    """(n, d) query vectors of playlists outside the graph from their in-vocabulary seed tracks.

    lightgcn: Σ_{t∈S} f_t / sqrt(|S|) (f = foldin_vectors: LightGCN's propagation for a new node);
    mean:     mean of the seeds' final embeddings (the seed system's recipe).
    A case with no seed gets the zero vector (callers score those with the title model)."""
    n, d = len(seeds), tracks_final.shape[1]
    rows, vals = _flat(seeds)
    rows_t, vals_t = torch.from_numpy(rows).to(foldin.device), torch.from_numpy(vals).to(foldin.device)
    table = foldin if mode == "lightgcn" else tracks_final
    if mode not in ("lightgcn", "mean"):
        raise ValueError(f"unknown fold-in mode {mode!r} (lightgcn or mean)")
    q = torch.zeros(n, d, dtype=table.dtype, device=table.device).index_add_(0, rows_t, table[vals_t])
    counts = torch.bincount(rows_t, minlength=n).clamp_min(1).to(table.dtype)
    return q / (counts.sqrt() if mode == "lightgcn" else counts)[:, None]


@torch.no_grad()
def topk(queries: Tensor, items: Tensor, k: int, exclude: list[np.ndarray] | None = None,
         chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items by dot product for each query, never an excluded item.

    queries (n, d), items (T, d) on the same device; exclude: per query, item ids to skip.
    Returns scores (n, k) float32 and ids (n, k) int64, padded with -inf / -1 when fewer than k
    items are left."""
    n, T = queries.shape[0], items.shape[0]
    kk = min(k, T)
    out_s = np.full((n, k), -np.inf, np.float32)
    out_i = np.full((n, k), -1, np.int64)
    items_t = items.t().contiguous()
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        s = queries[lo:hi] @ items_t
        if exclude is not None:
            rows, cols = _flat(exclude[lo:hi])
            if len(rows):
                s[torch.from_numpy(rows).to(s.device), torch.from_numpy(cols).to(s.device)] = -torch.inf
        vs, ix = torch.topk(s, kk, dim=1)
        vs, ix = vs.float().cpu().numpy(), ix.cpu().numpy()
        ix[~np.isfinite(vs)] = -1
        out_s[lo:hi, :kk], out_i[lo:hi, :kk] = vs, ix
    return out_s, out_i
