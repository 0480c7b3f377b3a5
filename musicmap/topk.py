"""The one top-k, shared by training's validation, the recommend job, the ranker and evaluate.

    q = seed_queries(seeds, foldin, tracks_final, FoldIn("optimized"))    # (n, d): train/foldin.py
    ids, scores = topk(q, tracks_final, k=500, exclude=seeds, chunk=1024)   # (n, k) each
    ids, scores = topk_rows(score_block, k=500, exclude=seeds)              # a dense (n, T) block

topk_rows is the one top-k: every recommender's ranking goes through it (or through `select`,
its selection step, for the ranker's candidate lists; topk_sparse for sparse scores), with one
tie rule: score, then the lower id. topk bounds memory by chunk x T scores at a time (one
buffer, reused).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def flat_pairs(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, values) of a ragged list of int arrays."""
    lens = np.fromiter((len(x) for x in lists), np.int64, len(lists))
    rows = np.repeat(np.arange(len(lists)), lens)
    vals = np.concatenate(lists).astype(np.int64) if len(lists) and lens.sum() else np.zeros(0, np.int64)
    return rows, vals


GROUP = 8         # columns per level-1 group, level-1 groups per level-2 group (topk selection)
CPU_ROWS = 512    # on CPU, rows per matrix multiply (at most `chunk`)
BUFFER = 2 ** 26  # at most this many scores in the buffer (256 MB of float32): at the MPD's
                  # width (1.7M embedded tracks) 512 rows would take 3.5 GB per process


def _two_level_topk(s: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact top-k (descending) of each row of s (c, W), W a multiple of GROUP**2 (s may be a
    column slice of a wider block: it is never reshaped).

    Level-1 groups are the strided column sets {j, j+M1, ..., j+(GROUP-1)M1} (M1 = W/GROUP), whose
    maxima are an elementwise max of GROUP contiguous slices; level-2 groups are strided sets of
    level-1 groups. The k groups with the largest maxima hold a top-k of the row (any column
    outside them is <= the k-th largest group maximum, and those k maxima are k columns >= it),
    so top-k super-groups -> top-k of their groups -> top-k of those groups' columns is exact
    (equal scores may pick different columns) and only ~3 x GROUP x k values go through topk
    instead of W: torch.topk over 177K columns costs more than the matrix multiply itself."""
    c, W = s.shape
    m1n = W // GROUP
    m2n = m1n // GROUP
    step = torch.arange(GROUP, device=s.device)[None, :, None]
    m1 = s[:, :m1n].clone()                                                  # (c, M1)
    for j in range(1, GROUP):
        torch.maximum(m1, s[:, j * m1n:(j + 1) * m1n], out=m1)
    m2 = m1.view(c, GROUP, m2n).amax(1)                                      # (c, M2)
    top2 = torch.topk(m2, k, dim=1, sorted=False).indices                    # (c, k)
    groups = (top2[:, None, :] + m2n * step).view(c, GROUP * k)              # their level-1 groups
    top1 = torch.gather(groups, 1, torch.topk(torch.gather(m1, 1, groups), k, dim=1,
                                              sorted=False).indices)         # (c, k)
    cols = (top1[:, None, :] + m1n * step).view(c, GROUP * k)                # their columns
    v, j = torch.topk(torch.gather(s, 1, cols), k, dim=1)
    return v, torch.gather(cols, 1, j)


def select(s: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact top-k (descending) of each row of s (c, W): (values, column ids). Wide rows go
    through _two_level_topk on their first multiple of GROUP**2 columns, the few columns left
    through torch.topk, and the two lists are merged; narrow rows through torch.topk. Equal
    scores come in either's order."""
    c, W = s.shape
    G2 = GROUP * GROUP
    if W < 2 * k * G2:
        return torch.topk(s, k, dim=1)
    main = W - W % G2
    v, ix = _two_level_topk(s[:, :main], k)
    if main == W:
        return v, ix
    v2, ix2 = torch.topk(s[:, main:], min(k, W - main), dim=1)
    v, j = torch.topk(torch.cat([v, v2], 1), k, dim=1)
    return v, torch.gather(torch.cat([ix, ix2 + main], 1), 1, j)


@torch.no_grad()
def topk_rows(s: Tensor, k: int, exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The one top-k: ids (n, k) int64 and scores (n, k) float32 of each row of a score block
    s (n, W), never an excluded id, padded with -1 / -inf when fewer than k are left. Equal
    scores come by the lower id (the tie rule of every method: score, then track id). Excluded
    entries of s are set to -inf in place."""
    n, W = s.shape
    kk = min(k, W)
    out_i, out_s = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
    if n == 0 or kk == 0:
        return out_i, out_s
    if exclude is not None:
        r, cols = flat_pairs(exclude)
        if len(r):
            s[torch.from_numpy(r).to(s.device), torch.from_numpy(cols).to(s.device)] = -torch.inf
    # one more than asked: when the (k+1)-th equals the k-th, the row has a tie at the cut and
    # which ids are in depends on the rule (a pass over that row); otherwise the k are the k
    vs, ix = select(s, min(kk + 1, W))
    ix, order = torch.sort(ix, dim=1)                       # by id, then stably by score
    vs = torch.gather(vs, 1, order)
    vs, order = torch.sort(vs, dim=1, descending=True, stable=True)
    ix = torch.gather(ix, 1, order)
    if kk < W:
        cut = torch.nonzero((vs[:, kk] == vs[:, kk - 1]) & torch.isfinite(vs[:, kk])).squeeze(1)
        for i in cut.tolist():
            cand = torch.nonzero(s[i] >= vs[i, kk - 1]).squeeze(1)          # ascending ids
            v, o = torch.sort(s[i, cand], descending=True, stable=True)
            vs[i, :kk], ix[i, :kk] = v[:kk], cand[o[:kk]]
    vs, ix = vs[:, :kk].float().cpu().numpy(), ix[:, :kk].cpu().numpy()
    ix[~np.isfinite(vs)] = -1
    out_i[:, :kk], out_s[:, :kk] = ix, vs
    return out_i, out_s


def topk_sparse(m, k: int, exclude: list[np.ndarray], fill: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """topk_rows for sparse scores: m (n, W) scipy CSR whose stored entries above 0 are the
    tracks a method reached (every other track scores 0). Ids (n, k) and scores (n, k) by the
    same rule (score, then id), never an excluded id; a row with fewer than k reached tracks is
    filled from `fill` (ids in order, e.g. by popularity; None: by id, the order of the
    unreached tracks' equal scores), scored 0, and padded with -1 / -inf after that."""
    n, W = m.shape
    out_i, out_s = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
    fill = np.arange(W) if fill is None else fill
    for i in range(n):
        lo, hi = m.indptr[i], m.indptr[i + 1]
        cols, vals = m.indices[lo:hi].astype(np.int64), m.data[lo:hi]
        own = exclude[i]
        keep = (vals > 0) & ~np.isin(cols, own)
        cols, vals = cols[keep], vals[keep]
        if len(cols) > k:                                   # the best k, then ordered
            cut = np.argpartition(-vals, k - 1)[:k]
            tie = vals >= vals[cut].min()                   # every tie of the k-th score
            cols, vals = cols[tie], vals[tie]
        top = np.lexsort((cols, -vals))[:k]
        ids, sc = cols[top], vals[top].astype(np.float32)
        if len(ids) < k:
            more = fill[:k + len(ids) + len(own)]
            more = more[~np.isin(more, ids) & ~np.isin(more, own)][:k - len(ids)]
            ids, sc = np.concatenate([ids, more]), np.concatenate([sc, np.zeros(len(more), np.float32)])
        out_i[i, :len(ids)], out_s[i, :len(ids)] = ids, sc
    return out_i, out_s


@torch.no_grad()
def topk(queries: Tensor, items: Tensor, k: int, exclude: list[np.ndarray] | None = None,
         chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items by dot product for each query, never an excluded item.

    queries (n, d), items (T, d) on the same device; exclude: per query, item ids to skip.
    Returns ids (n, k) int64 and scores (n, k) float32, as topk_rows. Scores one block of rows
    at a time (`chunk` rows; on CPU at most CPU_ROWS; never more than BUFFER scores) into one
    reused buffer."""
    n, T = queries.shape[0], items.shape[0]
    if n == 0 or T == 0:
        return topk_rows(torch.zeros(n, T), k)
    rows = max(1, min(n, chunk if items.device.type != "cpu" else min(chunk, CPU_ROWS), BUFFER // T))
    dtype = torch.promote_types(queries.dtype, items.dtype)
    buf = torch.empty(rows, T, dtype=dtype, device=items.device)
    items_t = items.t().to(dtype)                # a view: the matmul takes the transpose
    out_i, out_s = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        s = buf[:hi - lo]
        torch.mm(queries[lo:hi].to(dtype), items_t, out=s)
        out_i[lo:hi], out_s[lo:hi] = topk_rows(s, k, None if exclude is None else exclude[lo:hi])
    return out_i, out_s
