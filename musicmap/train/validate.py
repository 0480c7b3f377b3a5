"""Validation of the training loop (musicmap/train/main.py): every epoch, and of every fold-in
mode on the kept weights at the end, on the validation cases (each rank scores its share).

    validate(model, adj, track_degree, cases, k=500, world=world)   # {"ndcg": ..., ...}
    choose_foldin(model, adj, track_degree, cases, cfg, world)      # {"val": ..., "chosen": ...}
"""
from __future__ import annotations

import numpy as np
import torch

from musicmap import distributed, metrics
from musicmap.topk import topk
from musicmap.train.foldin import FALLBACK, FOLDIN_MODES, FORMULAS, FoldIn, seed_queries
from musicmap.train.model import LightGCN


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
    cases) foldin.FALLBACK."""
    recommend = cfg.recommend
    report = {"formula": {m: f.replace("{steps}", str(recommend.foldin_steps)) for m, f in FORMULAS.items()}, "val": {}}
    if val_shard is not None:
        for mode in FOLDIN_MODES:
            report["val"][mode] = validate(model, adj, track_degree, val_shard, cfg.evaluate.k, world,
                                           FoldIn.from_config(recommend).with_mode(mode))
    if recommend.foldin != "auto":
        report["chosen"], report["by"] = recommend.foldin, "recommend.foldin"
    elif report["val"]:
        report["chosen"] = max(FOLDIN_MODES, key=lambda m: report["val"][m]["ndcg"])
        report["by"] = "validation NDCG"
    else:
        report["chosen"], report["by"] = FALLBACK, "default (no validation cases)"
    return report
