"""The baselines every result is set beside, one way to get each fitted by name (fitted): popularity,
recent popularity, item co-occurrence, and the strongest simple methods, RP3beta and EASE^R
(recommend.recommenders), tuned on validation over a small grid (the `baselines` config section)
by NDCG. What is tuned here is what evaluate scores beside the model, what fit-ranker's RP3beta
source uses, and what bench_quality reports.

    tuned = tune(graph, val_cases, cfg.baselines)     # {"rp3beta": {"alpha": .75, ..., "grid": [...]},
                                                     #  "ease": {"lam": 200.0, ...} or {"skipped": "why"}}
    rec = fitted(ctx, "rp3beta", tuned)              # any of BASELINES; None when skipped
    rec = ctx.baseline("cooccurrence")               # the same, once per command (recommend.context)

Test cases are never read here.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from musicmap import metrics
from musicmap.cases import EvalCases
from musicmap.errors import InputError
from musicmap.graph import Graph
from musicmap.log import get_logger
from musicmap.recommend.recommenders import EASE, CoOccurrence, Popularity, RecentPopularity, RP3Beta

log = get_logger("baselines")
TUNED = ("rp3beta", "ease")                       # tuned on validation
BASELINES = ("popularity", "recent_popularity", "cooccurrence", *TUNED)


def grid(name: str, baselines_cfg) -> list[dict]:
    """The settings tried for one method (baselines.*)."""
    if name == "rp3beta":
        return [{"alpha": float(a), "beta": float(b), "neighbours": baselines_cfg.rp3beta_neighbours}
                for a, b in itertools.product(baselines_cfg.rp3beta_alpha, baselines_cfg.rp3beta_beta)]
    return [{"lam": float(lam)} for lam in baselines_cfg.ease_lambda]


def _unfitted(name: str, params: dict, title_model=None, chunk: int = 256, max_tracks: int = 20000):
    """An unfitted tuned method with `params` (grid() keys)."""
    if name == "rp3beta":
        return RP3Beta(params["alpha"], params["beta"], params["neighbours"], title_model, chunk)
    return EASE(params["lam"], title_model, max_tracks, chunk)


def tuning_cases(cases: EvalCases, n: int, random_seed: int) -> EvalCases:
    """At most n of the validation cases that have seeds (item-based methods need them)."""
    idx = [i for i in range(len(cases)) if len(cases.seeds[i])]
    if n and len(idx) > n:
        idx = sorted(np.random.default_rng([random_seed, 23]).choice(idx, n, replace=False).tolist())
    return cases.subset(idx)


def fitted_grid(name: str, baselines_cfg, graph: Graph, rows: np.ndarray):
    """(settings, fitted recommender) for each grid point, in grid() order. RP3beta computes only
    `rows` of its item-item matrix (the tuning cases' seeds: nothing else is scored) and shares
    each alpha's walk across the betas."""
    if name != "rp3beta":
        for params in grid(name, baselines_cfg):
            yield params, _unfitted(name, params, max_tracks=baselines_cfg.ease_max_tracks).fit(graph)
        return
    for alpha in baselines_cfg.rp3beta_alpha:
        betas = [float(b) for b in baselines_cfg.rp3beta_beta]
        fitted = RP3Beta(float(alpha), 0.0, baselines_cfg.rp3beta_neighbours).fit_betas(graph, betas, rows)
        for beta, rec in zip(betas, fitted):
            yield {"alpha": float(alpha), "beta": beta, "neighbours": baselines_cfg.rp3beta_neighbours}, rec


def tune(graph: Graph, val: EvalCases, baselines_cfg, title_model=None, k: int = 500) -> dict:
    """{method: the best grid point by validation NDCG, with every point's score}."""
    cases = tuning_cases(val, baselines_cfg.tune_cases, baselines_cfg.random_seed)
    rows = np.unique(np.concatenate([np.zeros(0, np.int64), *cases.seeds]))
    out = {}
    for name in TUNED:
        t0, scored = time.time(), []
        try:
            for params, rec in fitted_grid(name, baselines_cfg, graph, rows):
                scored.append({**params, "val_ndcg": metrics.mean_ndcg(rec.rank(cases.seeds, None, k)[0], cases.holdouts, k)})
        except EASE.TooLarge as e:
            log.info("EASE^R skipped: %s", e)
            out[name] = {"skipped": str(e)}
            continue
        best = max(scored, key=lambda p: p["val_ndcg"]) if scored else {}
        out[name] = {**best, "grid": scored, "cases": len(cases), "seconds": round(time.time() - t0, 1)}
        log.info("%s tuned on %d validation cases: %s (val NDCG %.4f; %d settings in %.0fs)", name, len(cases),
                 {k_: v for k_, v in best.items() if k_ != "val_ndcg"}, best.get("val_ndcg", float("nan")),
                 len(scored), time.time() - t0)
    return out


def chosen_for(ctx) -> dict:
    """The tuned settings for the committed graph: what fit-ranker chose and recorded in its
    manifest (it tunes them for its RP3beta source), else tuned now on the validation cases."""
    report = ctx.ranker_report or {}
    if report.get("input", {}).get("graph_version") == ctx.committed.version and "tuned" in report:
        return report["tuned"]
    val = ctx.cases("val")
    if not len(val):
        log.warning("no validation cases to tune RP3beta and EASE^R on: their defaults are scored")
        return {name: _middle_of_grid(name, ctx.cfg.baselines) for name in TUNED}
    return tune(ctx.graph, val, ctx.cfg.baselines, k=ctx.cfg.evaluate.k)


def _middle_of_grid(name: str, baselines_cfg) -> dict:
    """The middle of each grid, for a graph without validation cases."""
    points = grid(name, baselines_cfg)
    return {**points[len(points) // 2], "untuned": True}


def fitted(ctx, name: str, tuned: dict):
    """The baseline `name` (BASELINES) fitted on the context's graph, with the `tuned` settings for
    RP3beta and EASE^R; None for a tuned method that was skipped (EASE^R above its size). The
    item-based ones serve title-only playlists with the title model, as the served method does,
    and keep their neighbours in the machine's cache (recommenders.Neighbours)."""
    evaluate_cfg, baselines_cfg, titles = ctx.cfg.evaluate, ctx.cfg.baselines, ctx.title_model
    if name == "popularity":
        return Popularity().fit(ctx.graph)
    if name == "recent_popularity":
        return RecentPopularity(ctx.train_modified_at(), evaluate_cfg.recent_share).fit(ctx.graph)
    if name == "cooccurrence":
        return CoOccurrence(evaluate_cfg.chunk, titles, baselines_cfg.cooccurrence_neighbours).fit(ctx.graph, ctx.cfg.storage)
    if name not in TUNED:
        raise InputError(f"evaluate.baselines: unknown baseline {name!r} ({', '.join(BASELINES)})")
    params = tuned.get(name) or {}
    if "skipped" in params or not params:
        return None
    rec = _unfitted(name, params, titles, evaluate_cfg.chunk, baselines_cfg.ease_max_tracks)
    return rec.fit(ctx.graph, ctx.cfg.storage) if isinstance(rec, RP3Beta) else rec.fit(ctx.graph)
