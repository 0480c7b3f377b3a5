"""Graph playlists (the train playlists in the graph): how each method ranks them from what it
knows of them, which of their held-out tracks measure it (graph_val / graph_test, musicmap.cases),
and which method serves them. fit-ranker chooses (choose_graph_method, recorded in its manifest),
recommend serves (rank_graph_playlists with Context.graph_method), evaluate measures; all three
import this module, and none imports another's job.

    ranked, scores = rank_graph_playlists(ctx, playlist_idx, k=500, method="rp3beta")
    choice = choose_graph_method(ctx, k=500)       # {"chosen": ..., "val_ndcg": {method: NDCG}}
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from musicmap import metrics
from musicmap.cases import EvalCases
from musicmap.errors import InputError
from musicmap.graph import embedded_only
from musicmap.log import get_logger, progress
from musicmap.recommend.context import ITEM_BASED, Context
from musicmap.topk import topk

log = get_logger("recommend")


def rank_graph_playlists(ctx: Context, idx: np.ndarray, k: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Top k of graph playlists `idx` (playlist_idx), never one of their own tracks. lightgcn
    scores their trained embedding against the tracks it embeds; an item-based method
    (rp3beta, cooccurrence, ease) ranks the whole catalogue from their tracks as seeds. A
    playlist with no embedded track has no trained vector (no edge ever moved its initial one):
    the best item-based method serves it (Context.graph_fallback)."""
    own = [ctx.graph.playlist_tracks(int(p)) for p in idx]
    names = lambda rows: ctx.train_playlists["name"].take(pa.array(idx[rows])).to_pylist()  # noqa: E731
    if method != "lightgcn":
        return ctx.baseline(method).rank(own, names(np.arange(len(idx))), k)
    dev = torch.device(ctx.device())
    tracks = torch.from_numpy(ctx.model.tracks).to(dev)
    q = torch.from_numpy(ctx.model.playlists[idx]).to(dev)
    ranked, scores = topk(q, tracks, k, exclude=embedded_only(own, len(tracks)), chunk=ctx.cfg.recommend.chunk)
    untrained = np.flatnonzero([not (s < len(tracks)).any() for s in own])
    if len(untrained):
        ranked[untrained], scores[untrained] = ctx.graph_fallback().rank([own[i] for i in untrained], names(untrained), k)
    return ranked, scores


GRAPH_METHODS = ("lightgcn", *ITEM_BASED)


def graph_cases(ctx: Context, split: str) -> tuple[EvalCases, np.ndarray]:
    """The held-out cases of graph playlists (split graph_val or graph_test, musicmap.cases) and
    their playlist_idx."""
    cases = ctx.cases(split)
    pid = ctx.train_playlists["pid"].to_numpy()               # by playlist_idx
    order = np.argsort(pid, kind="stable")
    return cases, order[np.searchsorted(pid, cases.pid, sorter=order)].astype(np.int64)


def choose_graph_method(ctx: Context, k: int) -> dict:
    """NDCG of each method on the graph_val cases, and the best (what recommend.graph_method=auto
    serves graph playlists)."""
    cases, idx = graph_cases(ctx, "graph_val")
    if not len(cases):
        return {"chosen": "lightgcn", "by": "default (no graph_val cases: graph.holdout_playlists=0?)"}
    val = {}
    for method in progress(GRAPH_METHODS, desc="graph playlists: each method", unit="method"):
        try:
            ranked = rank_graph_playlists(ctx, idx, k, method)[0]
        except InputError as e:     # EASE^R above its size
            log.info("graph playlists: %s skipped (%s)", method, e)
            continue
        val[method] = metrics.mean_ndcg(ranked, cases.holdouts, k)
    chosen = max(val, key=val.get)
    log.info("graph playlists (%d graph_val cases): %s; serving %s", len(cases),
             ", ".join(f"{m} NDCG {v:.4f}" for m, v in val.items()), chosen)
    return {"chosen": chosen, "by": "graph_val NDCG", "val_ndcg": val, "cases": len(cases)}
