"""The BPR batches of the training loop (musicmap/train/main.py), each piece testable alone:
how many positives a rank takes per step, which edges it gets each epoch, and the negatives
drawn for them.

    batch = per_rank_batch(E, world, cfg.train.batch_size, cfg.train.min_steps_per_epoch)
    for ids in epoch_batches(E, world, rank, batch, seed, epoch):
        neg = sample_negatives(graph, graph.playlist[ids], n, reject=True, gen=gen)
"""
from __future__ import annotations

import math

import numpy as np

from musicmap.graph import Graph


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


def epoch_batches(num_edges: int, world: int, rank: int, batch: int, random_seed: int, epoch: int):
    """This rank's edge ids for each step of an epoch: one permutation shared by all ranks
    (seeded by seed and epoch), cut into steps of world * batch edges, each step dealt to the
    ranks round-robin. Every rank gets the same number of steps (a final remainder smaller than
    the world size is dropped: it is reshuffled into the next epoch)."""
    perm = np.random.default_rng([random_seed, epoch]).permutation(num_edges)
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
