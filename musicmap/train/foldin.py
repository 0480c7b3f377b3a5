"""Fold-in: how a playlist outside the graph (validation, test, challenge, a notebook's seed
tracks) gets a query vector from its seed tracks. The one Python home of the formula: training's
validation, the recommend job, the ranker, `similar` and the public API call it; the music map's
page does the `lightgcn` mode in JavaScript (tools/map_page.html), and tests/test_map.py checks
the page against `seed_queries` in a real browser.

    spec = FoldIn.from_config(cfg.recommend, chosen)         # recommend.foldin; auto: `chosen`
    q = seed_queries(seeds, model.foldin, tracks_final, spec)  # (n, d)

Modes (FOLDIN_MODES):
  lightgcn   LightGCN's propagation for a new node: Σ_{t∈S} f_t / sqrt(|S|) (foldin_vectors);
  mean       the mean of the seeds' final embeddings (the seed system's recipe);
  optimized  that mean refined by a few BPR steps against the fixed tracks (optimize_queries),
             as ALS libraries fold in a new user.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from musicmap.topk import flat_pairs

FOLDIN_MODES = ("lightgcn", "mean", "optimized")
# What recommend.foldin=auto uses when training had no validation cases to choose by: the best
# mode on the real sets we measured (bench/BENCHMARKS.md).
FALLBACK = "optimized"
FORMULAS = {"lightgcn": "sum_{t in S} f_t / sqrt(|S|), f_t = 1/(L+1) sum_{k<L} x_t^(k) / sqrt(d_t)",
            "mean": "mean of the seeds' final embeddings",
            "optimized": "the mean, then {steps} Adam steps of BPR against fixed tracks"}


@dataclass(frozen=True)
class FoldIn:
    """How a playlist outside the graph gets a vector from its seed tracks (recommend.foldin*)."""
    mode: str = "lightgcn"
    steps: int = 5
    lr: float = 0.05
    l2: float = 0.01
    negatives: int = 64
    random_seed: int = 0

    @classmethod
    def from_config(cls, recommend, chosen: str | None = None) -> "FoldIn":
        """From the recommend section: recommend.foldin, or with auto `chosen` (the mode the
        trainer's validation chose; FALLBACK when there is none)."""
        mode = (chosen or FALLBACK) if recommend.foldin == "auto" else recommend.foldin
        return cls(mode, recommend.foldin_steps, recommend.foldin_lr, recommend.foldin_l2,
                   recommend.foldin_negatives)

    def with_mode(self, mode: str) -> "FoldIn":
        return FoldIn(mode, self.steps, self.lr, self.l2, self.negatives, self.random_seed)


@torch.no_grad()
def seed_queries(seeds: list[np.ndarray], foldin: Tensor, tracks_final: Tensor,
                 mode: str | FoldIn = "lightgcn") -> Tensor:
    """(n, d) query vectors of playlists outside the graph from their in-catalogue seed tracks.

    lightgcn:  Σ_{t∈S} f_t / sqrt(|S|) (f = foldin_vectors: LightGCN's propagation for a new node);
    mean:      mean of the seeds' final embeddings (the seed system's recipe);
    optimized: the mean, refined by a few BPR steps against the fixed tracks
               (optimize_queries).
    A case with no seed gets the zero vector (callers score those with the title model)."""
    spec = mode if isinstance(mode, FoldIn) else FoldIn(mode)
    if spec.mode not in FOLDIN_MODES:
        raise ValueError(f"unknown fold-in mode {spec.mode!r} ({', '.join(FOLDIN_MODES)})")
    n, d = len(seeds), tracks_final.shape[1]
    rows, vals = flat_pairs(seeds)
    rows_t, vals_t = torch.from_numpy(rows).to(foldin.device), torch.from_numpy(vals).to(foldin.device)
    table = foldin if spec.mode == "lightgcn" else tracks_final
    q = torch.zeros(n, d, dtype=table.dtype, device=table.device).index_add_(0, rows_t, table[vals_t])
    counts = torch.bincount(rows_t, minlength=n).clamp_min(1).to(table.dtype)
    q = q / (counts.sqrt() if spec.mode == "lightgcn" else counts)[:, None]
    if spec.mode == "optimized":
        q = optimize_queries(q, tracks_final, rows_t, vals_t, spec.steps, spec.lr, spec.l2,
                             spec.negatives, spec.random_seed)
    return q


@torch.no_grad()
def foldin_vectors(layer_outputs: list[Tensor], track_degree: Tensor, num_playlists: int) -> Tensor:
    """(T, d) per-track vectors f_t = 1/(L+1) Σ_{k=0..L-1} x_t^(k) / sqrt(d_t).

    A new playlist joined to seed tracks S (its own x^(0) unknown, i.e. 0, and the tracks'
    degrees unchanged) gets from LightGCN's propagation the final embedding
        e_p = 1/(L+1) Σ_{k=1..L} Σ_{t∈S} x_t^(k-1) / sqrt(|S| d_t) = Σ_{t∈S} f_t / sqrt(|S|),
    which is how playlists outside the graph (validation, test, challenge) are scored."""
    L = len(layer_outputs) - 1
    xt = torch.stack([x[num_playlists:] for x in layer_outputs[:L]]).sum(0)
    inv = torch.where(track_degree > 0, track_degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(track_degree))
    return xt * inv[:, None] / (L + 1)


def optimize_queries(q0: Tensor, tracks: Tensor, rows: Tensor, cols: Tensor, steps: int = 10,
                     lr: float = 0.05, l2: float = 0.01, negatives: int = 64, random_seed: int = 0) -> Tensor:
    """Refine the vectors of new playlists with the tracks fixed, as ALS libraries fold in a new
    user: `steps` Adam steps on each playlist's BPR loss (its seeds against random tracks) plus
    l2 |q|².

    q0 (n, d): starting vectors; tracks (T, d): final track embeddings; rows, cols (nnz,): the
    (playlist, seed track) pairs. Returns (n, d).

    Each step draws one set of `negatives` tracks shared by all playlists, from `seed` and the
    step number only, and each playlist's loss is its own term of a sum: a playlist's result does
    not depend on which other playlists share its batch (sharded = unsharded)."""
    n = q0.shape[0]
    if steps <= 0 or n == 0 or rows.numel() == 0:
        return q0
    count = torch.bincount(rows, minlength=n).clamp_min(1).to(q0.dtype)
    gen = torch.Generator(device="cpu").manual_seed(random_seed)
    q = q0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([q], lr=lr)
    seed_vecs = tracks[cols]
    with torch.enable_grad():
        for _ in range(steps):
            neg = torch.randint(0, tracks.shape[0], (negatives,), generator=gen).to(tracks.device)
            pos = (q[rows] * seed_vecs).sum(-1)                                  # (nnz,)
            neg_s = q @ tracks[neg].t()                                          # (n, negatives)
            pair = F.softplus(neg_s[rows] - pos[:, None]).mean(1)               # (nnz,)
            per_playlist = torch.zeros(n, dtype=q.dtype, device=q.device).index_add_(0, rows, pair)
            loss = (per_playlist / count).sum() + l2 * q.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return q.detach()
