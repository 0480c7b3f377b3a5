"""The baselines every result is set beside (popularity, recent popularity, item co-occurrence) and
the strongest simple methods, tuned on validation: RP3beta and EASE^R (recommend.recommenders), each
over a small grid (the `baselines` config section) scored by NDCG on validation cases. What is
chosen here is what evaluate scores beside the model, what fit-ranker's RP3beta source uses, and
what bench_quality reports.

    chosen = tune(graph, val_cases, cfg.baselines, title_model)
    chosen["rp3beta"]   # {"alpha": 0.75, "beta": 0.25, "neighbours": 200, "val_ndcg": ..., "grid": [...]}
    chosen["ease"]      # {"lam": 200.0, ...}, or {"skipped": "why"} above baselines.ease_max_tracks
    rec = make("rp3beta", chosen, graph, title_model, chunk=256)   # fitted, or None when skipped
    rec = baseline(ctx, "cooccurrence", chosen)                      # any of evaluate.baselines

Test cases are never read here.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from musicmap import metrics, storage
from musicmap.errors import InputError
from musicmap.log import get_logger
from musicmap.recommend.recommenders import EASE, CoOccurrence, Popularity, RecentPopularity, RP3Beta
from musicmap.train.data import EvalCases, Graph

log = get_logger("yardsticks")
NAMES = ("rp3beta", "ease")


def grid(name: str, bc) -> list[dict]:
    """The settings tried for one method (baselines.*)."""
    if name == "rp3beta":
        return [{"alpha": float(a), "beta": float(b), "neighbours": bc.rp3beta_neighbours}
                for a, b in itertools.product(bc.rp3beta_alpha, bc.rp3beta_beta)]
    return [{"lam": float(lam)} for lam in bc.ease_lambda]


def build(name: str, params: dict, title_model=None, chunk: int = 256, max_tracks: int = 20000):
    """An unfitted recommender of `name` with `params` (grid() keys)."""
    if name == "rp3beta":
        return RP3Beta(params["alpha"], params["beta"], params["neighbours"], title_model, chunk)
    return EASE(params["lam"], title_model, max_tracks, chunk)


def tuning_cases(cases: EvalCases, n: int, random_seed: int) -> EvalCases:
    """At most n of the validation cases that have seeds (item-based methods need them)."""
    idx = [i for i in range(len(cases)) if len(cases.seeds[i])]
    if n and len(idx) > n:
        idx = sorted(np.random.default_rng([random_seed, 23]).choice(idx, n, replace=False).tolist())
    return cases.subset(idx)


def fitted_grid(name: str, bc, graph: Graph, rows: np.ndarray):
    """(settings, fitted recommender) for each grid point, in grid() order. RP3beta computes only
    `rows` of its item-item matrix (the tuning cases' seeds: nothing else is scored) and shares
    each alpha's walk across the betas."""
    if name != "rp3beta":
        for params in grid(name, bc):
            yield params, build(name, params, max_tracks=bc.ease_max_tracks).fit(graph)
        return
    for alpha in bc.rp3beta_alpha:
        betas = [float(b) for b in bc.rp3beta_beta]
        fitted = RP3Beta(float(alpha), 0.0, bc.rp3beta_neighbours).fit_betas(graph, betas, rows)
        for beta, rec in zip(betas, fitted):
            yield {"alpha": float(alpha), "beta": beta, "neighbours": bc.rp3beta_neighbours}, rec


def tune(graph: Graph, val: EvalCases, bc, title_model=None, k: int = 500) -> dict:
    """{method: the best grid point by validation NDCG, with every point's score}."""
    cases = tuning_cases(val, bc.tune_cases, bc.random_seed)
    rows = np.unique(np.concatenate([np.zeros(0, np.int64), *cases.seeds]))
    out = {}
    for name in NAMES:
        t0, scored = time.time(), []
        try:
            for params, rec in fitted_grid(name, bc, graph, rows):
                scored.append({**params, "val_ndcg": mean_ndcg(rec.rank(cases.seeds, None, k)[0], cases, k)})
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
    try:
        r = storage.open_committed(storage.stage_uri(ctx.cfg, "ranker"))
        manifest = storage.read_json(r.path("manifest.json"))
        if manifest.get("input", {}).get("graph_version") == ctx.committed.version and "yardsticks" in manifest:
            return manifest["yardsticks"]
    except storage.NotCommittedError:
        pass
    val = ctx.cases("val")
    if not len(val):
        log.warning("no validation cases to tune RP3beta and EASE^R on: their defaults are scored")
        return {name: build_defaults(name, ctx.cfg.baselines) for name in NAMES}
    return tune(ctx.graph, val, ctx.cfg.baselines, k=ctx.cfg.evaluate.k)


def build_defaults(name: str, bc) -> dict:
    """The middle of each grid, for a graph without validation cases."""
    points = grid(name, bc)
    return {**points[len(points) // 2], "untuned": True}


def make(name: str, chosen: dict, graph: Graph, title_model=None, chunk: int = 256, max_tracks: int = 20000,
         storage_cfg=None):
    """The fitted recommender of a tuned method, or None when it was skipped. With storage_cfg,
    RP3beta's neighbours are cached on this machine (recommenders.Neighbours)."""
    params = chosen.get(name) or {}
    if "skipped" in params or not params:
        return None
    rec = build(name, params, title_model, chunk, max_tracks)
    return rec.fit(graph, storage_cfg) if isinstance(rec, RP3Beta) else rec.fit(graph)


def baseline(ctx, name: str, chosen: dict):
    """A fitted baseline of evaluate.baselines, or None for a yardstick that was skipped (EASE^R
    above its size). The item-based ones serve title-only playlists with the title model, as the
    served method does."""
    ec, titles = ctx.cfg.evaluate, ctx.title_model
    if name == "popularity":
        return Popularity().fit(ctx.graph)
    if name == "recent_popularity":
        return RecentPopularity(ctx.train_modified_at(), ec.recent_share).fit(ctx.graph)
    if name == "cooccurrence":
        return CoOccurrence(ec.chunk, titles, ctx.cfg.baselines.cooccurrence_neighbours).fit(ctx.graph, ctx.cfg.storage)
    if name in NAMES:
        return make(name, chosen, ctx.graph, titles, ec.chunk, ctx.cfg.baselines.ease_max_tracks, ctx.cfg.storage)
    raise InputError(f"evaluate.baselines: unknown baseline {name!r} (popularity, recent_popularity, "
                     f"cooccurrence, {', '.join(NAMES)})")


def mean_ndcg(ranked: np.ndarray, cases: EvalCases, k: int) -> float:
    vals = [metrics.ndcg(r, h, k) for r, h in zip(ranked, cases.holdouts)]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else 0.0
