"""The pieces of the training loop that train/main.py runs, each testable alone: the BPR batches
a rank gets each epoch, the negatives drawn for them, and validation (every epoch, and of every
fold-in mode at the end).

    batch = per_rank_batch(E, world, cfg.train.batch_size, cfg.train.min_steps_per_epoch)
    for ids in epoch_batches(E, world, rank, batch, seed, epoch):
        neg = sample_negatives(graph, graph.playlist[ids], n, reject=True, gen=gen)
    validate(model, adj, track_degree, cases, k=500, world=world)   # {"ndcg": ..., ...}
"""
from __future__ import annotations

import math

import numpy as np
import torch

from musicmap import distributed, metrics
from musicmap.train.data import Graph
from musicmap.train.model import LightGCN
from musicmap.train.scoring import FOLDIN_MODES, FoldIn, seed_queries, topk


def per_rank_batch(num_edges: int, world: int, batch_size: int, min_steps: int) -> int:
    """BPR positives per step per rank: train.batch_size, made smaller where it would give an
    epoch fewer than `min_steps` steps. A 50K-edge graph then gets as many Adam steps per epoch
    as a 50M-edge one gets from the full batch (one step per epoch learns nothing)."""
    if min_steps > 0:
        batch_size = min(batch_size, max(1, math.ceil(num_edges / (world * min_steps))))
    return batch_size


def steps_per_epoch(num_edges: int, world: int, batch: int) -> int:
    """How many steps epoch_batches gives every rank."""
    return max(1, math.ceil((num_edges - num_edges % world) / (world * batch)))


def epoch_batches(num_edges: int, world: int, rank: int, batch: int, seed: int, epoch: int):
    """This rank's edge ids for each step of an epoch: one permutation shared by all ranks
    (seeded by seed and epoch), cut into steps of world * batch edges, each step dealt to the
    ranks round-robin. Every rank gets the same number of steps (a final remainder smaller than
    the world size is dropped: it is reshuffled into the next epoch)."""
    perm = np.random.default_rng([seed, epoch]).permutation(num_edges)
    perm = perm[:num_edges - num_edges % world]
    for s in range(steps_per_epoch(num_edges, world, batch)):
        yield perm[s * world * batch:(s + 1) * world * batch][rank::world]


def sample_negatives(graph: Graph, playlists: np.ndarray, n: int, reject: bool,
                     gen: np.random.Generator) -> np.ndarray:
    """(B, n) random tracks for each playlist; with reject, tracks of the playlist itself are
    redrawn (up to 3 rounds; the rare leftover stays, as in most BPR samplers)."""
    T = graph.num_tracks
    neg = gen.integers(0, T, (len(playlists), n))
    if reject:
        keys = graph.positive_keys()
        for _ in range(3):
            k = playlists[:, None] * T + neg
            pos = np.searchsorted(keys, k).clip(max=len(keys) - 1)
            hit = keys[pos] == k
            if not hit.any():
                break
            neg[hit] = gen.integers(0, T, int(hit.sum()))
    return neg


@torch.no_grad()
def validate(model: LightGCN, adj, track_degree: torch.Tensor, cases, k: int, world: int,
             foldin_spec: FoldIn = FoldIn()) -> dict:
    """Mean R-precision, NDCG and clicks over the validation cases, each scored from its seeds
    as `foldin_spec` says. Each rank scores its share; the sums are all-reduced, so every rank
    gets the same numbers."""
    final, foldin = model.embeddings(adj, track_degree)
    tracks = final[model.num_playlists:]
    sums = np.zeros(4)
    if len(cases):
        q = seed_queries(cases.seeds, foldin, tracks, foldin_spec)
        ranked, _ = topk(q, tracks, k, exclude=cases.seeds)
        for r, h in zip(ranked, cases.holdouts):
            m = metrics.case_metrics(r, h, k=k)
            if m is not None:
                sums += [m["r_precision"], m["ndcg"], m["clicks"], 1.0]
    r_prec, ndcg, clicks, n = distributed.sum_over_ranks(sums) if world > 1 else sums.tolist()
    return {"r_precision": r_prec / max(n, 1.0), "ndcg": ndcg / max(n, 1.0),
            "clicks": clicks / max(n, 1.0), "cases": int(n)}


def choose_foldin(model: LightGCN, adj, track_degree, val_shard, cfg, world: int) -> dict:
    """Validation NDCG of every fold-in mode (FOLDIN_MODES) on the kept weights, and the one
    recommend uses when recommend.foldin is auto: the best on validation, else (no validation
    cases) the optimized fold-in, the best on the real sets we measured."""
    recommend = cfg.recommend
    report = {"formula": {"lightgcn": "sum_{t in S} f_t / sqrt(|S|), f_t = 1/(L+1) sum_{k<L} x_t^(k) / sqrt(d_t)",
                          "mean": "mean of the seeds' final embeddings",
                          "optimized": f"the mean, then {recommend.foldin_steps} Adam steps of BPR against fixed tracks"},
              "val": {}}
    if val_shard is not None:
        for mode in FOLDIN_MODES:
            report["val"][mode] = validate(model, adj, track_degree, val_shard, cfg.evaluate.k, world,
                                           FoldIn.from_config(recommend, mode))
    if recommend.foldin != "auto":
        report["chosen"], report["by"] = recommend.foldin, "recommend.foldin"
    elif report["val"]:
        report["chosen"] = max(FOLDIN_MODES, key=lambda m: report["val"][m]["ndcg"])
        report["by"] = "validation NDCG"
    else:
        report["chosen"], report["by"] = "optimized", "default (no validation cases)"
    return report
