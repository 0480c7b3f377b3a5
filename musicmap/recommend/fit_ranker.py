"""`musicmap fit-ranker`: fit the re-ranker (recommend/ranker.py) on validation playlists only,
cross-validate it by playlist against every method alone, and commit what recommend serves.

    musicmap fit-ranker --root URI        -> <root>/ranker/<version>/model.txt, manifest.json

The fitting cases are the validation cases plus more cut from the same playlists (the cut of
musicmap/cases.py, the one build-graph makes); nothing of the test split is read.
"""
from __future__ import annotations

import time

import lightgbm as lgb
import numpy as np

from musicmap import cases as cut
from musicmap import metrics, mpd, storage
from musicmap.cases import EvalCases, load_eval
from musicmap.config import config_from_args
from musicmap.errors import InputError
from musicmap.graph import uri_index
from musicmap.log import get_logger, progress
from musicmap.recommend import baselines
from musicmap.recommend.context import ITEM_BASED, load_context
from musicmap.recommend.features import FEATURE_NAMES, Block, Sources
from musicmap.recommend.graph_playlists import choose_graph_method
from musicmap.recommend.ranker import lgb_params, order_block, sources_for

log = get_logger("ranker")


def augment(cases: EvalCases, uri_to_idx: dict, per_playlist: int, random_seed: int) -> EvalCases:
    """More fitting cases from the same validation playlists: each playlist's tracks (from its
    seed_half case, else its first case) cut as `per_playlist` random challenge categories
    (recommend.features never sees anything but these playlists' own tracks)."""
    full, name = {}, {}
    for i, p in enumerate(cases.pid.tolist()):
        uris = list(dict.fromkeys(cases.seed_uris[i] + cases.holdout_uris[i]))
        if p not in full or cases.category[i] == mpd.SEED_PROTOCOL:
            full[p] = uris
        name[p] = name.get(p) or cases.name[i]
    rows = [(p, c, pos, uris) for p, uris in full.items()
            for c, pos in cut.more_cases(p, len(uris), random_seed, per_playlist)]
    out = EvalCases(np.array([r[0] for r in rows], np.int64), [], [], [], [], [], [], [])
    for p, c, pos, uris in rows:
        seed_uris = [uris[j] for j in pos]
        held = [uris[j] for j in cut.holdout_positions(uris, pos)]
        out.category.append(c.name)
        out.name.append(name[p] if c.title else None)
        out.seeds.append(np.array(cut.seed_ids(seed_uris, uri_to_idx), np.int64))
        out.seed_uris.append(seed_uris)
        out.holdouts.append(np.array([uri_to_idx.get(u, -2 - j) for j, u in enumerate(held)], np.int64))
        out.holdout_uris.append(held)
        out.holdout_artists.append([])
    return out


def concat(a: EvalCases, b: EvalCases) -> EvalCases:
    return EvalCases(np.concatenate([a.pid, b.pid]), *[getattr(a, f) + getattr(b, f) for f in
                     ("category", "name", "seeds", "seed_uris", "holdouts", "holdout_uris", "holdout_artists")])


class Pool:
    """The candidates, features and labels of a set of cases, computed once (CV reuses them).
    The first `scored` cases keep every candidate (cross-validation ranks them); the others are
    only fitted on, so they keep only the rows LightGBM sees: every relevant candidate and at most
    `negatives` others, drawn with the seed (0 = all), as dataset() would draw them."""

    def __init__(self, sources: Sources, cases: EvalCases, chunk: int, show: bool = False,
                 scored: int | None = None, negatives: int = 0, random_seed: int = 0):
        self.blocks, self.negatives, self.random_seed = [], negatives, random_seed
        scored = len(cases) if scored is None else scored
        for lo in progress(range(0, len(cases), chunk), desc="ranker features", unit="chunk", disable=not show):
            part = cases.subset(range(lo, min(lo + chunk, len(cases))))
            b = sources.candidates(part.seeds, part.name)
            for i in range(len(part)):
                block = (b.cand[i], b.x[i], b.fallback[i], part.holdouts[i])
                self.blocks.append(block if lo + i < scored else self._rows(lo + i, *block))

    def _rows(self, i: int, cand, x, fallback, hold) -> tuple:
        """(None, X, y) of case i: the rows it is fitted on."""
        v = np.flatnonzero(cand >= 0)
        y = np.isin(cand[v], hold)
        if self.negatives and (~y).sum() > self.negatives:
            rng = np.random.default_rng([self.random_seed, i])
            v = np.sort(np.concatenate([v[y], rng.choice(v[~y], self.negatives, replace=False)]))
            y = np.isin(cand[v], hold)
        return None, x[v], y.astype(np.float32)

    def dataset(self, idx):
        """(X, y, group sizes) of the cases idx, for LightGBM."""
        xs, ys, groups = [], [], []
        for i in idx:
            block = self.blocks[i]
            _, x, y = block if block[0] is None else self._rows(i, *block)
            if len(y) == 0:
                continue
            xs.append(x)
            ys.append(y)
            groups.append(len(y))
        return np.concatenate(xs), np.concatenate(ys), groups

    def order(self, idx, predict, k: int) -> np.ndarray:
        out = np.full((len(idx), k), -1, np.int64)
        for j, i in enumerate(idx):
            cand, x, fb, _ = self.blocks[i]
            out[j] = order_block(Block(cand[None], x[None], fb[None]), predict, k)[0][0]
        return out


def fit_booster(pool: Pool, idx, ranker_cfg):
    X, y, groups = pool.dataset(idx)
    return lgb.train(lgb_params(ranker_cfg), lgb.Dataset(X, y, group=groups, feature_name=FEATURE_NAMES), ranker_cfg.rounds)


def mean_metrics(ranked: np.ndarray, cases: EvalCases, k: int) -> dict:
    """NDCG and R-precision over the challenge categories and over the seed protocol."""
    rows = [metrics.case_metrics(r, h, k=k) for r, h in zip(ranked, cases.holdouts)]
    out = {}
    for label, keep in (("challenge", lambda c: c != mpd.SEED_PROTOCOL), ("seed_protocol", lambda c: c == mpd.SEED_PROTOCOL)):
        sel = [r for r, c in zip(rows, cases.category) if keep(c)]
        agg = metrics.aggregate(sel)["all"]
        out[label] = {m: agg.get(m) for m in ("ndcg", "r_precision", "cases")}
    both = metrics.aggregate(rows)["all"]
    out["all"] = {m: both.get(m) for m in ("ndcg", "r_precision", "cases")}
    return out


def cross_validate(pool: Pool, fit_pid: np.ndarray, n_val: int, ranker_cfg, k: int) -> np.ndarray:
    """Ranked lists of the first n_val cases of the pool, each from a booster fitted on the
    playlists of the other folds (fit_pid: the pid of every pool case)."""
    pids = np.unique(fit_pid[:n_val])
    fold_of = dict(zip(np.random.default_rng([ranker_cfg.random_seed, 11]).permutation(pids).tolist(),
                       np.arange(len(pids)) % max(ranker_cfg.folds, 2)))
    fold = np.array([fold_of.get(int(p), -1) for p in fit_pid])
    ranked = np.full((n_val, k), -1, np.int64)
    for f in progress(range(max(ranker_cfg.folds, 2)), desc="ranker cross-validation", unit="fold"):
        test = np.flatnonzero(fold[:n_val] == f)
        if len(test):
            booster = fit_booster(pool, np.flatnonzero((fold != f) & (fold >= 0)), ranker_cfg)
            ranked[test] = pool.order(test, booster.predict, k)
    return ranked


# ------------------------------------------------------------------ the stage

def fitting_cases(ctx, ranker_cfg) -> tuple[EvalCases, int]:
    """The validation cases (at most ranker_cfg.max_playlists playlists) followed by the augmented ones,
    and how many of them are the original cases."""
    val = load_eval(ctx.committed, "val", ctx.uris, max_playlists=ranker_cfg.max_playlists, random_seed=ranker_cfg.random_seed)
    if not len(val):
        raise InputError(f"{ctx.committed.uri}: no validation cases to fit the ranker on "
                         f"(graph.val_fraction=0?); fit it on a validated run and point "
                         f"paths.ranker at it (README: the final fit on all playlists)")
    extra = augment(val, uri_index(ctx.tracks), ranker_cfg.cases_per_playlist, ranker_cfg.random_seed)
    return concat(val, extra), len(val)


def single_methods(ctx, cases: EvalCases, k: int, tuned: dict) -> dict:
    """Ranked lists of each method alone on the cases (what each stage adds); RP3beta and EASE^R
    with their validation-tuned settings (on the cases they were tuned on: an upper bound)."""
    ctx.use_tuned(tuned)
    recs = {"lightgcn": ctx.lightgcn(),
            **ctx.baselines(baselines.BASELINES)}
    return {name: rec.rank(cases.seeds, cases.name, k)[0] for name, rec in recs.items()}


def no_vector_choice(ctx, val: EvalCases, single: dict, k: int) -> dict:
    """Who serves new playlists whose seeds are all too rare for LightGCN (Context.fallback):
    the title model or an item-based method, whichever has the higher NDCG on such validation
    cases (a tie goes to the title model, the default without this measurement)."""
    reach = ctx.lightgcn().reach(val.seeds)
    cases = [i for i, s in enumerate(val.seeds) if len(s) and not reach[i]]
    if not cases:
        return {"chosen": "title", "by": "default (no such validation case)", "cases": 0}
    sub = val.subset(cases)
    ranked = {"title": ctx.title_model.rank(sub.seeds, sub.name, k)[0],
              **{m: single[m][cases] for m in ITEM_BASED if m in single}}
    ndcg = {m: metrics.mean_ndcg(r, sub.holdouts, k) for m, r in ranked.items()}
    best = max(ndcg, key=lambda m: (ndcg[m], m == "title"))
    return {"chosen": best, "by": "validation NDCG", "ndcg": ndcg, "cases": len(cases)}


def cold_choice(cv: np.ndarray, val: EvalCases, title_model, k: int) -> dict:
    """Who serves playlists without a seed (title only), the ranker or the title model. The one
    with the higher cross-validated NDCG on those validation cases wins; a tie goes to the
    title model."""
    cases = [i for i, s in enumerate(val.seeds) if len(s) == 0]
    if not cases:
        return {"chosen": "ranker", "ndcg": {}, "cases": []}
    sub = val.subset(cases)
    title, _ = title_model.rank(sub.seeds, sub.name, k)
    ndcg = {"ranker": metrics.mean_ndcg(cv[cases], sub.holdouts, k), "title": metrics.mean_ndcg(title, sub.holdouts, k)}
    return {"chosen": "ranker" if ndcg["ranker"] > ndcg["title"] else "title", "ndcg": ndcg, "cases": cases}


def run(cfg) -> dict:
    t0 = time.time()
    ranker_cfg, k = cfg.ranker, cfg.recommend.k
    ctx = load_context(cfg, ranker=False)
    ctx.fitted = ctx.ranker_report = None      # choices made here, not by an earlier fit
    cases, n_val = fitting_cases(ctx, ranker_cfg)
    log.info("fitting the ranker on %d validation cases of %d playlists (+%d drawn from the same "
             "playlists)", n_val, len(np.unique(cases.pid)), len(cases) - n_val)
    tuned = baselines.tune(ctx.graph, cases.subset(range(n_val)), cfg.baselines, k=k)
    sources = sources_for(ctx, tuned)
    pool = Pool(sources, cases, ranker_cfg.chunk, show=cfg.train.progress, scored=n_val, negatives=ranker_cfg.fit_negatives,
                random_seed=ranker_cfg.random_seed)
    val = cases.subset(range(n_val))
    single = single_methods(ctx, val, k, tuned)
    report = {name: mean_metrics(r, val, k) for name, r in single.items()}
    no_vector = no_vector_choice(ctx, val, single, k)
    cv = cross_validate(pool, cases.pid, n_val, ranker_cfg, k)
    cold = cold_choice(cv, val, ctx.title_model, k)
    if cold["chosen"] == "title":
        cv[cold["cases"]] = ctx.title_model.rank([val.seeds[i] for i in cold["cases"]],
                                                 [val.name[i] for i in cold["cases"]], k)[0]
    report["ranker"] = mean_metrics(cv, val, k)
    booster = fit_booster(pool, range(len(cases)), ranker_cfg)
    graph_choice = choose_graph_method(ctx, k)
    chosen = "ranker" if report["ranker"]["all"]["ndcg"] > report["lightgcn"]["all"]["ndcg"] else "lightgcn"
    strongest = max(report, key=lambda m: report[m]["all"]["ndcg"])
    gain = booster.feature_importance("gain")
    manifest = {
        "features": FEATURE_NAMES, "params": lgb_params(ranker_cfg), "rounds": ranker_cfg.rounds,
        "importance_gain": dict(zip(FEATURE_NAMES, np.round(gain / max(gain.sum(), 1e-12), 4).tolist())),
        "cases": {"validation": n_val, "drawn": len(cases) - n_val,
                  "playlists": int(len(np.unique(cases.pid)))},
        "cross_validation": {"folds": ranker_cfg.folds, "methods": report,
                             "note": "ranker: each fold scored by a booster fitted on the other folds' "
                                     "playlists; the other methods are fitted on train playlists only"},
        "chosen": chosen, "strongest_on_validation": strongest,
        "no_seed_cases": {"chosen": cold["chosen"], "ndcg": cold["ndcg"], "cases": len(cold["cases"])},
        "no_vector_cases": no_vector,
        "input": {"graph_version": ctx.committed.version, "model_version": ctx.model.version,
                  "foldin": ctx.foldin_spec().mode},
        "tuned": tuned, "graph_playlists": graph_choice,
        "config": cfg.ranker.to_dict(), "seconds": round(time.time() - t0, 1),
    }
    out = storage.StageWriter(storage.stage_uri(cfg, "ranker"))
    storage.write_bytes(out.path("model.txt"), booster.model_to_string().encode())
    storage.write_json(out.path("manifest.json"), manifest)
    marker = out.commit({"stage": "ranker", "model_version": ctx.model.version, "chosen": chosen})
    return {"manifest": manifest, "out": out.uri, "version": marker["version"]}


def format_report(manifest: dict) -> str:
    cv = manifest["cross_validation"]["methods"]
    lines = [f"Validation ({manifest['cases']['validation']:,} cases of {manifest['cases']['playlists']:,} "
             f"playlists; the ranker {manifest['cross_validation']['folds']}-fold cross-validated by playlist):",
             f"{'method':<19}{'NDCG':>9}{'R-prec':>9}{'seed-half NDCG':>16}{'R-prec':>9}"]
    for m, r in sorted(cv.items(), key=lambda kv: -kv[1]["all"]["ndcg"]):
        c, s = r["challenge"], r["seed_protocol"]
        fmt = lambda v: f"{v:.4f}" if v is not None else "-"  # noqa: E731
        lines.append(f"{m:<19}{fmt(c['ndcg']):>9}{fmt(c['r_precision']):>9}{fmt(s['ndcg']):>16}{fmt(s['r_precision']):>9}")
    lines.append(f"served by default (recommend.method=auto): {manifest['chosen']}")
    g = manifest.get("graph_playlists", {})
    if g.get("val_ndcg"):
        lines.append(f"graph playlists ({g['cases']:,} graph_val cases, NDCG): "
                     + ", ".join(f"{m} {v:.4f}" for m, v in sorted(g["val_ndcg"].items(), key=lambda kv: -kv[1]))
                     + f"; served (recommend.graph_method=auto): {g['chosen']}")
    nv = manifest.get("no_vector_cases") or {}
    if nv.get("ndcg"):
        lines.append(f"seeds all too rare for LightGCN ({nv['cases']:,} validation cases, NDCG): "
                     + ", ".join(f"{m} {v:.4f}" for m, v in sorted(nv["ndcg"].items(), key=lambda kv: -kv[1]))
                     + f"; LightGCN alone hands them to: {nv['chosen']}")
    if manifest["strongest_on_validation"] not in ("ranker", "lightgcn"):
        lines.append(f"note: {manifest['strongest_on_validation']} is stronger on validation than both")
    top = sorted(manifest["importance_gain"].items(), key=lambda kv: -kv[1])[:6]
    lines.append("most useful features (share of gain): " + ", ".join(f"{f} {v:.2f}" for f, v in top))
    return "\n".join(lines)


def add_arguments(p) -> None:
    pass


def run_cli(args) -> int:
    res = run(config_from_args(args))
    print(format_report(res["manifest"]))
    print(f"ranker committed at {res['out']} ({res['version']})")
    return 0
