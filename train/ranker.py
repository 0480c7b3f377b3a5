"""The second stage: a learned re-ranker over candidates from LightGCN, item co-occurrence,
popularity, recent popularity and the title model (the two-stage design that won the RecSys
Challenge 2018). LightGBM's LambdaRank orders each playlist's candidates by the features of
train.features; it is fitted on validation playlists only, and served only when a
cross-validation over those playlists says it beats LightGCN alone.

    musicmap fit-ranker --root URI        -> <root>/ranker/<version>/model.txt, manifest.json

Why LightGBM LambdaRank: it optimises a listwise NDCG objective directly, reads missing values
(a case without seeds) natively, saves as plain text (no pickle), and predicts millions of rows a
second on CPUs; XGBoost's rank:ndcg would do the same job with a heavier install.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from musicmap import metrics, mpd, storage
from musicmap.errors import InputError
from musicmap.log import get_logger, progress
from musicmap.train import yardsticks
from musicmap.train.data import EvalCases, load_eval, uri_index
from musicmap.train.features import FEATURES, Block, Sources
from musicmap.train.scoring import topk_rows

log = get_logger("ranker")


def lgb_params(rk) -> dict:
    """LightGBM parameters from the ranker config section."""
    # Pairs are formed with the top 100 of each list only: half the time of all 500, the same
    # NDCG@500 on both real sets (bench/BENCHMARKS.md).
    return {"objective": "lambdarank", "metric": "ndcg", "eval_at": [500], "verbose": -1,
            "lambdarank_truncation_level": 100, "num_leaves": rk.num_leaves,
            "learning_rate": rk.learning_rate, "min_data_in_leaf": rk.min_data_in_leaf,
            "feature_fraction": rk.feature_fraction, "bagging_fraction": 0.8, "bagging_freq": 1,
            "seed": rk.seed, "deterministic": True, "force_row_wise": True,
            "num_threads": rk.threads}


class Ranker:
    """Re-ranks each playlist's candidates (train.features.Sources) with a fitted booster.

        ranked, scores = Ranker(sources, booster).rank(seeds, names, k=500)

    Same interface as the other recommenders. It serves new playlists only (it is fitted on
    them); graph playlists get LightGCN alone (train.recommend.recommend_train)."""
    name = "ranker"

    def __init__(self, sources: Sources, booster, chunk: int = 64, cold: str = "ranker"):
        self.sources, self.booster, self.chunk, self.cold = sources, booster, chunk, cold

    def fit(self, graph) -> "Ranker":
        """Nothing to fit here: `musicmap fit-ranker` (run below) fits the booster."""
        return self

    def rank(self, seeds: list[np.ndarray], names: list, k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """Playlists without a seed go to the title model when cross-validation said it does
        better on them (cold="title")."""
        out = np.full((len(seeds), k), -1, np.int64)
        out_s = np.full((len(seeds), k), -np.inf, np.float32)
        for lo in range(0, len(seeds), self.chunk):
            hi = min(lo + self.chunk, len(seeds))
            block = self.sources.candidates(seeds[lo:hi], names[lo:hi])
            out[lo:hi], out_s[lo:hi] = order_block(block, self.booster.predict, k)
        cold = [i for i, s in enumerate(seeds) if len(s) == 0] if self.cold == "title" else []
        if cold:
            out[cold], out_s[cold] = self.sources.titles.rank([seeds[i] for i in cold], [names[i] for i in cold], k)
        return out, out_s


def order_block(block: Block, predict, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of each case's candidates by predicted score; a list shorter than k is filled from
    the block's fallback order (scored below every candidate)."""
    valid = block.cand >= 0
    s = np.full(block.cand.shape, -np.inf)
    if valid.any():
        s[valid] = predict(block.x[valid])
    order, sc = topk_rows(torch.from_numpy(s), k, stable=True)   # ties in candidate order
    ids = np.where(order >= 0, np.take_along_axis(block.cand, order.clip(min=0), 1), -1)
    out = np.full((len(ids), k), -1, np.int64)
    out_s = np.full((len(ids), k), -np.inf, np.float32)
    floor = np.nanmin(np.where(np.isfinite(s), s, np.nan)) if np.isfinite(s).any() else 0.0
    for i in range(len(ids)):
        r, rs = ids[i][ids[i] >= 0], sc[i][ids[i] >= 0]
        if len(r) < k:
            fill = block.fallback[i][~np.isin(block.fallback[i], r) & (block.fallback[i] >= 0)][:k - len(r)]
            r = np.concatenate([r, fill])
            rs = np.concatenate([rs, floor - 1.0 - np.arange(len(fill), dtype=np.float32)])
        out[i, :len(r)], out_s[i, :len(r)] = r, rs
    return out, out_s


# ------------------------------------------------------------------ fitting cases

def augment(cases: EvalCases, uri_to_idx: dict, per_playlist: int, seed: int) -> EvalCases:
    """More fitting cases from the same validation playlists: each playlist's tracks (from its
    seed_half case, else its first case) cut as `per_playlist` random challenge categories
    (train.features never sees anything but these playlists' own tracks)."""
    full, name = {}, {}
    for i, p in enumerate(cases.pid.tolist()):
        uris = list(dict.fromkeys(cases.seed_uris[i] + cases.holdout_uris[i]))
        if p not in full or cases.category[i] == mpd.SEED_PROTOCOL:
            full[p] = uris
        name[p] = name.get(p) or cases.name[i]
    rows = []
    for p, uris in full.items():
        eligible = [c for c in mpd.CHALLENGE_CATEGORIES if len(uris) >= c.min_tracks]
        rng = np.random.default_rng([seed, p])
        for c in rng.permutation(eligible)[:per_playlist] if eligible else []:
            pos = sorted(rng.choice(len(uris), c.seeds, replace=False).tolist()) if c.random else list(range(c.seeds))
            rows.append((p, c, pos, uris))
    out = EvalCases(np.array([r[0] for r in rows], np.int64), [], [], [], [], [], [], [])
    for p, c, pos, uris in rows:
        chosen = set(pos)
        seed_uris = [uris[j] for j in pos]
        held = [u for j, u in enumerate(uris) if j not in chosen]
        out.category.append(c.name)
        out.name.append(name[p] if c.title else None)
        out.seeds.append(np.array(list(dict.fromkeys(uri_to_idx[u] for u in seed_uris if u in uri_to_idx)), np.int64))
        out.seed_uris.append(seed_uris)
        out.holdouts.append(np.array([uri_to_idx.get(u, -2 - j) for j, u in enumerate(held)], np.int64))
        out.holdout_uris.append(held)
        out.holdout_artists.append([])
    return out


def concat(a: EvalCases, b: EvalCases) -> EvalCases:
    return EvalCases(np.concatenate([a.pid, b.pid]), *[getattr(a, f) + getattr(b, f) for f in
                     ("category", "name", "seeds", "seed_uris", "holdouts", "holdout_uris", "holdout_artists")])


class Pool:
    """The candidates, features and labels of a set of cases, computed once (CV reuses them)."""

    def __init__(self, sources: Sources, cases: EvalCases, chunk: int, show: bool = False):
        self.blocks = []
        for lo in progress(range(0, len(cases), chunk), desc="ranker features", unit="chunk", disable=not show):
            part = cases.subset(range(lo, min(lo + chunk, len(cases))))
            b = sources.candidates(part.seeds, part.name)
            for i in range(len(part)):
                self.blocks.append((b.cand[i], b.x[i], b.fallback[i], part.holdouts[i]))

    def dataset(self, idx, negatives: int = 0, seed: int = 0):
        """(X, y, group sizes) of the cases idx, for LightGBM: every relevant candidate and at
        most `negatives` others of each case, drawn with the seed (0 = all)."""
        xs, ys, groups = [], [], []
        for i in idx:
            cand, x, _, hold = self.blocks[i]
            v = np.flatnonzero(cand >= 0)
            y = np.isin(cand[v], hold)
            if negatives and (~y).sum() > negatives:
                rng = np.random.default_rng([seed, i])
                v = np.sort(np.concatenate([v[y], rng.choice(v[~y], negatives, replace=False)]))
                y = np.isin(cand[v], hold)
            if len(v) == 0:
                continue
            xs.append(x[v])
            ys.append(y.astype(np.float32))
            groups.append(len(v))
        return np.concatenate(xs), np.concatenate(ys), groups

    def order(self, idx, predict, k: int) -> np.ndarray:
        out = np.full((len(idx), k), -1, np.int64)
        for j, i in enumerate(idx):
            cand, x, fb, _ = self.blocks[i]
            out[j] = order_block(Block(cand[None], x[None], fb[None]), predict, k)[0][0]
        return out


def fit_booster(pool: Pool, idx, rk):
    import lightgbm as lgb
    X, y, groups = pool.dataset(idx, rk.fit_negatives, rk.seed)
    return lgb.train(lgb_params(rk), lgb.Dataset(X, y, group=groups, feature_name=FEATURES), rk.rounds)


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


def cross_validate(pool: Pool, fit_pid: np.ndarray, n_val: int, rk, k: int) -> np.ndarray:
    """Ranked lists of the first n_val cases of the pool, each from a booster fitted on the
    playlists of the other folds (fit_pid: the pid of every pool case)."""
    pids = np.unique(fit_pid[:n_val])
    fold_of = dict(zip(np.random.default_rng([rk.seed, 11]).permutation(pids).tolist(),
                       np.arange(len(pids)) % max(rk.folds, 2)))
    fold = np.array([fold_of.get(int(p), -1) for p in fit_pid])
    ranked = np.full((n_val, k), -1, np.int64)
    for f in range(max(rk.folds, 2)):
        test = np.flatnonzero(fold[:n_val] == f)
        if len(test):
            booster = fit_booster(pool, np.flatnonzero((fold != f) & (fold >= 0)), rk)
            ranked[test] = pool.order(test, booster.predict, k)
    return ranked


# ------------------------------------------------------------------ the stage

def sources_for(ctx, tuned: dict) -> Sources:
    """The candidate sources of a loaded recommend Context (train.context.load_context), with
    RP3beta as tuned on validation (`tuned`: train.yardsticks.tune's result)."""

    def ids(col):
        values = ctx.tracks[col].to_pylist()
        index = {v: i for i, v in enumerate(dict.fromkeys(values))}
        return np.array([index[v] for v in values], np.int64)
    rk = ctx.cfg.ranker
    ctx.use_tuned(tuned)       # one RP3beta fit, shared with the other methods of this command
    rp3 = ctx.baselines(["rp3beta"]).get("rp3beta")
    return Sources(ctx.graph, ids("artist_uri"), ids("album_uri"), ctx.train_modified_at(),
                   ctx.lightgcn(), ctx.title_model, rp3, k=ctx.cfg.recommend.k, per_source=rk.per_source)


def load_booster(cfg, model_version: str):
    """(booster, manifest) of the committed ranker, or (None, reason) when it cannot serve."""
    import lightgbm as lgb
    uri = storage.stage_uri(cfg, "ranker")
    try:
        r = storage.open_committed(uri, "fit-ranker")
    except storage.NotCommittedError as e:
        return None, str(e)
    manifest = {**storage.read_json(r.path("manifest.json")), "version": r.version}
    if manifest["features"] != FEATURES:
        raise InputError(f"{uri}: fitted on other features ({len(manifest['features'])}); rerun "
                         f"`musicmap fit-ranker`")
    if manifest["input"]["model_version"] != model_version:
        manifest["stale"] = (f"fitted on model {manifest['input']['model_version']}, the model is "
                             f"now {model_version}")
    return lgb.Booster(model_str=storage.read_text(r.path("model.txt"))), manifest


def fitting_cases(ctx, rk) -> tuple[EvalCases, int]:
    """The validation cases (at most rk.max_playlists playlists) followed by the augmented ones,
    and how many of them are the original cases."""
    val = load_eval(ctx.committed, "val", uri_index(ctx.tracks))
    if not len(val):
        raise InputError(f"{ctx.committed.uri}: no validation cases to fit the ranker on "
                         f"(graph.val_fraction=0?); fit it on a validated run and point "
                         f"paths.ranker at it (README: the final fit on all playlists)")
    pids = np.unique(val.pid)
    if rk.max_playlists and len(pids) > rk.max_playlists:
        keep = set(np.random.default_rng([rk.seed, 3]).choice(pids, rk.max_playlists, replace=False).tolist())
        val = val.subset([i for i, p in enumerate(val.pid.tolist()) if p in keep])
    extra = augment(val, uri_index(ctx.tracks), rk.cases_per_playlist, rk.seed)
    return concat(val, extra), len(val)


def single_methods(ctx, cases: EvalCases, k: int, tuned: dict) -> dict:
    """Ranked lists of each method alone on the cases (what each stage adds); RP3beta and EASE^R
    with their validation-tuned settings (on the cases they were tuned on: an upper bound)."""
    ctx.use_tuned(tuned)
    recs = {"lightgcn": ctx.lightgcn(),
            **ctx.baselines(("cooccurrence", "popularity", "recent_popularity", *yardsticks.NAMES))}
    return {name: rec.rank(cases.seeds, cases.name, k)[0] for name, rec in recs.items()}


def cold_choice(cv: np.ndarray, val: EvalCases, title_model, k: int) -> dict:
    """Who serves playlists without a seed (title only), the ranker or the title model. The one
    with the higher cross-validated NDCG on those validation cases wins; a tie goes to the
    title model."""
    cases = [i for i, s in enumerate(val.seeds) if len(s) == 0]
    if not cases:
        return {"chosen": "ranker", "ndcg": {}, "cases": []}
    sub = val.subset(cases)
    title, _ = title_model.rank(sub.seeds, sub.name, k)
    def mean_ndcg(ranked):
        vals = [metrics.ndcg(r, h, k) for r, h in zip(ranked, sub.holdouts)]
        return float(np.mean([v for v in vals if v is not None] or [0.0]))
    ndcg = {"ranker": mean_ndcg(cv[cases]), "title": mean_ndcg(title)}
    return {"chosen": "ranker" if ndcg["ranker"] > ndcg["title"] else "title", "ndcg": ndcg, "cases": cases}


def run(cfg) -> dict:
    from musicmap.train.context import load_context
    from musicmap.train.recommend import choose_graph_method
    t0 = time.time()
    rk, k = cfg.ranker, cfg.recommend.k
    ctx = load_context(cfg, ranker=False)
    cases, n_val = fitting_cases(ctx, rk)
    log.info("fitting the ranker on %d validation cases of %d playlists (+%d drawn from the same "
             "playlists)", n_val, len(np.unique(cases.pid)), len(cases) - n_val)
    tuned = yardsticks.tune(ctx.graph, cases.subset(range(n_val)), cfg.baselines, k=k)
    sources = sources_for(ctx, tuned)
    pool = Pool(sources, cases, rk.chunk, show=cfg.train.progress)
    val = cases.subset(range(n_val))
    report = {name: mean_metrics(r, val, k) for name, r in single_methods(ctx, val, k, tuned).items()}
    cv = cross_validate(pool, cases.pid, n_val, rk, k)
    cold = cold_choice(cv, val, ctx.title_model, k)
    if cold["chosen"] == "title":
        cv[cold["cases"]] = ctx.title_model.rank([val.seeds[i] for i in cold["cases"]],
                                                 [val.name[i] for i in cold["cases"]], k)[0]
    report["ranker"] = mean_metrics(cv, val, k)
    booster = fit_booster(pool, range(len(cases)), rk)
    graph_choice = choose_graph_method(ctx, k)
    chosen = "ranker" if report["ranker"]["all"]["ndcg"] > report["lightgcn"]["all"]["ndcg"] else "lightgcn"
    strongest = max(report, key=lambda m: report[m]["all"]["ndcg"])
    gain = booster.feature_importance("gain")
    manifest = {
        "features": FEATURES, "params": lgb_params(rk), "rounds": rk.rounds,
        "importance_gain": dict(zip(FEATURES, np.round(gain / max(gain.sum(), 1e-12), 4).tolist())),
        "cases": {"validation": n_val, "drawn": len(cases) - n_val,
                  "playlists": int(len(np.unique(cases.pid)))},
        "cross_validation": {"folds": rk.folds, "methods": report,
                             "note": "ranker: each fold scored by a booster fitted on the other folds' "
                                     "playlists; the other methods are fitted on train playlists only"},
        "chosen": chosen, "strongest_on_validation": strongest,
        "no_seed_cases": {"chosen": cold["chosen"], "ndcg": cold["ndcg"], "cases": len(cold["cases"])},
        "input": {"graph_version": ctx.committed.version, "model_version": ctx.model.version,
                  "foldin": ctx.foldin_spec().mode},
        "yardsticks": tuned, "graph_playlists": graph_choice,
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
    if manifest["strongest_on_validation"] not in ("ranker", "lightgcn"):
        lines.append(f"note: {manifest['strongest_on_validation']} is stronger on validation than both")
    top = sorted(manifest["importance_gain"].items(), key=lambda kv: -kv[1])[:6]
    lines.append("most useful features (share of gain): " + ", ".join(f"{f} {v:.2f}" for f, v in top))
    return "\n".join(lines)


def add_arguments(p) -> None:
    pass


def run_cli(args) -> int:
    from musicmap.cli import config_from_args
    res = run(config_from_args(args))
    print(format_report(res["manifest"]))
    print(f"ranker committed at {res['out']} ({res['version']})")
    return 0
