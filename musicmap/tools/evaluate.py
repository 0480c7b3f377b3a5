"""Evaluate the recommendations: RecSys Challenge 2018 metrics for the model beside baselines run
in the same harness on the same cases, per challenge category and overall, and the seed system's
protocol (first half of each playlist as seeds) beside its published numbers.

    musicmap evaluate --root URI [--split test|val]

The model's lists are read from recs/ (what `musicmap recommend` wrote, val/test cases: one
committed version, whose summary says what made them); the baselines (popularity, recent
popularity, item co-occurrence, and RP3beta and EASE^R tuned on validation) rank the same cases
here. Writes
metrics/<version>/metrics.json and metrics/<version>/<metric>.png (a chart per metric by
category). Metric definitions: musicmap.metrics.DEFINITIONS (saved in metrics.json).
"""
from __future__ import annotations

import io
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from musicmap import metrics, mpd, schemas, storage
from musicmap.cases import EvalCases
from musicmap.config import config_from_args
from musicmap.errors import InputError
from musicmap.log import get_logger, progress
from musicmap.recommend import baselines
from musicmap.recommend.context import Context, load_context
from musicmap.recommend.graph_playlists import GRAPH_METHODS, graph_cases, rank_graph_playlists

log = get_logger("evaluate")
SEED_SYSTEM = {"precision@20": 0.0990, "hit_rate@20": 0.6576,
               "note": "published by the seed system on its own split (23,165 test playlists, "
                       "half of each as seeds); not the same cases"}
# short column heads of the printed table; x@k metrics are headed by their prefix and k
HEADS = {"r_precision": "R-prec", "r_precision_artist": "R-prec+art", "ndcg": "NDCG", "clicks": "clicks",
         "precision": "P", "hit_rate": "HR", "recall": "R"}
CHALLENGE = [c.name for c in mpd.CHALLENGE_CATEGORIES]


def committed_recs(ctx: Context, force: bool = False) -> tuple[storage.Committed, dict]:
    """The committed recs and their summary, checked to have been made from the committed graph,
    model and (when it served) ranker; otherwise a one-line error naming what to rerun."""
    recs = storage.open_committed(storage.stage_uri(ctx.cfg, "recs"), "recommend")
    summary = storage.read_json(recs.path("summary.json"))
    now = {"graph": ctx.committed.version, "model": ctx.model.version}
    if summary.get("method") == "ranker":
        now["ranker"] = storage.open_committed(storage.stage_uri(ctx.cfg, "ranker"), "fit-ranker").version
    for stage, version in now.items():
        made = summary.get(f"{stage}_version")
        if made != version and not force:
            raise InputError(f"{recs.uri}: the recommendations ({recs.version}) were made from {stage} {made}, "
                             f"the committed {stage} is {version}: rerun `musicmap recommend` (or pass --force "
                             f"to score them anyway)")
    return recs, summary


def model_ranks(ctx: Context, recs: storage.Committed, cases: EvalCases, k: int,
                category: str | None = None) -> np.ndarray | None:
    """(n, k) track_idx of the recs (one committed version) for each case, by pid and the case's
    category (or `category` for all: graph playlists' rows are "train"); None when some case has
    none. Only the rows of these cases are read: the part files of their kind (graph playlists
    under evaluation, or val/test cases; recommend/main.py PART_KINDS), filtered by pid."""
    kind = "graphcases" if category == "train" else "cases"
    columns, wanted = ["pid", "category", "rank", "track_uri"], [("pid", "in", np.unique(cases.pid).tolist())]
    parts = [n for n in storage.listdir(recs.path()) if n.startswith(f"part-{kind}-")]
    t = storage.read_parquet(recs.path(), columns=columns, schema=schemas.RECS, filters=wanted,
                             pattern=f"part-{kind}-*" if parts else "*")      # older recs: every part
    cats = [category] * len(cases) if category else cases.category
    keys = pa.table({"pid": pa.array(cases.pid, pa.int64()), "category": pa.array(cats, pa.string()),
                     "case": pa.array(np.arange(len(cases)), pa.int64())})
    t = t.filter(pc.less_equal(t["rank"], k)).join(keys, ["pid", "category"], join_type="inner")
    out = np.full((len(cases), k), -1, np.int64)
    case, rank = t["case"].to_numpy(), t["rank"].to_numpy().astype(np.int64)
    out[case, rank - 1] = pc.fill_null(pc.index_in(t["track_uri"], value_set=ctx.uris), -1).to_numpy()
    found = np.zeros(len(cases), bool)
    found[case] = True
    return out if found.all() else None


def served_ranks(ctx: Context, recs: storage.Committed, cases: EvalCases, k: int) -> np.ndarray:
    ranked = model_ranks(ctx, recs, cases, k)
    if ranked is None:
        raise InputError(f"{storage.stage_uri(ctx.cfg, 'recs')}: no recommendations for some of the "
                         f"{len(cases)} cases; run `musicmap recommend --playlists all` (or the evaluated "
                         f"split) first")
    return ranked


def graph_playlists(ctx: Context, recs: storage.Committed, summary: dict, split: str, artist_of,
                    artist_id) -> dict | None:
    """The graph playlists' held-out tracks (graph_<split>): what recommend wrote for them (when it
    wrote graph playlists; labelled with the method its summary names), and each method ranking
    them from their own tracks."""
    evaluate_cfg = ctx.cfg.evaluate
    cases, idx = graph_cases(ctx, f"graph_{split}")
    if not len(cases):
        return None
    methods = {}
    served = model_ranks(ctx, recs, cases, evaluate_cfg.k, category="train")
    if served is not None:
        methods[f"served ({summary.get('graph_playlists_method', 'lightgcn')})"] = served
    for m in GRAPH_METHODS:
        try:
            methods[m] = rank_graph_playlists(ctx, idx, evaluate_cfg.k, m)[0]
        except InputError as e:
            log.info("graph playlists: %s skipped (%s)", m, e)
    methods["popularity"] = ctx.baseline("popularity").rank(cases.seeds, cases.name, evaluate_cfg.k)[0]
    out = {"cases": len(cases), "served_written": served is not None, "methods": {}}
    for name, ranked in methods.items():
        out["methods"][name] = metrics.aggregate(score(ranked, cases, artist_of, artist_id, evaluate_cfg.k, evaluate_cfg.k_small))["all"]
    return out


def reachable(ctx: Context, cases: EvalCases) -> dict:
    """Shares of the held-out tracks (occurrences of the cases) that can be recommended at all:
    in the catalogue (every source but LightGCN), and among the tracks LightGCN embeds; and, per
    category, how many cases with seeds have no seed LightGCN embeds (LightGCN has no vector for
    them: its fallback, or the ranker's other sources, serve them)."""
    held = np.concatenate(cases.holdouts) if len(cases) else np.zeros(0, np.int64)
    n, T = max(len(held), 1), len(ctx.model.tracks)
    no_vector: dict[str, list[int]] = {}
    for category, seeds in zip(cases.category, cases.seeds):
        if len(seeds):
            counts = no_vector.setdefault(category, [0, 0])
            counts[0] += int(not (seeds < T).any())
            counts[1] += 1
    return {"holdouts": int(len(held)), "catalogue": float((held >= 0).sum() / n),
            "embedded": float(((held >= 0) & (held < T)).sum() / n),
            "no_embedded_seed": {c: {"cases": v[0], "of_seeded": v[1]} for c, v in sorted(no_vector.items())}}


def no_vector_share(reach: dict) -> float:
    """The share of cases with seeds that have no embedded seed (reachable()'s counts)."""
    counts = reach.get("no_embedded_seed", {}).values()
    return sum(c["cases"] for c in counts) / max(sum(c["of_seeded"] for c in counts), 1)


def score(ranked: np.ndarray, cases: EvalCases, artist_of: np.ndarray, artist_id: dict, k: int,
          k_small: int) -> list[dict | None]:
    rows = []
    for r, h, ha in zip(ranked, cases.holdouts, cases.holdout_artists):
        hid = [artist_id.get(a, -2 - j) for j, a in enumerate(ha)]
        rows.append(metrics.case_metrics(r, h, k=k, k_small=k_small,
                                         ranked_artists=np.where(r >= 0, artist_of[r], -1),
                                         holdout_artists=hid))
    return rows


def run(cfg, split: str, force: bool = False) -> dict:
    t0 = time.time()
    evaluate_cfg = cfg.evaluate
    ctx = load_context(cfg, ranker=False)
    cases = ctx.cases(split)
    if not len(cases):
        raise InputError(f"{ctx.committed.uri}: no {split} evaluation cases")
    artists = ctx.tracks["artist_uri"].to_pylist()
    artist_id = {a: i for i, a in enumerate(dict.fromkeys(artists))}
    artist_of = np.array([artist_id[a] for a in artists], np.int64)

    recs, summary = committed_recs(ctx, force)      # one committed version, read once
    served, foldin = summary.get("method", "lightgcn"), summary.get("foldin")
    methods: dict[str, np.ndarray] = {served: served_ranks(ctx, recs, cases, evaluate_cfg.k)}
    if served != "lightgcn":  # what the first stage alone gives, with the fold-in the recs used
        methods["lightgcn"] = ctx.lightgcn(foldin).rank(cases.seeds, cases.name, evaluate_cfg.k)[0]
    chosen = baselines.chosen_for(ctx) if set(evaluate_cfg.baselines) & set(baselines.TUNED) else {}
    ctx.use_tuned(chosen)      # each method fitted once, here and for the graph playlists
    for name, rec in progress(ctx.baselines(evaluate_cfg.baselines).items(), desc="baselines", unit="method"):
        methods[name] = rec.rank(cases.seeds, cases.name, evaluate_cfg.k)[0]

    is_seed = np.array([c == mpd.SEED_PROTOCOL for c in cases.category])
    report = {"split": split, "k": evaluate_cfg.k, "k_small": evaluate_cfg.k_small,
              "cases": {"challenge_categories": int((~is_seed).sum()), "seed_protocol": int(is_seed.sum()),
                        "playlists_drawn": (cases.drawn or (len(np.unique(cases.pid)),) * 2)[0],
                        "playlists": (cases.drawn or (len(np.unique(cases.pid)),) * 2)[1]},
              "definitions": metrics.DEFINITIONS, "methods": {},
              "seed_system_published": SEED_SYSTEM,
              "model": {"version": ctx.model.version, "best": ctx.model.manifest["best"],
                        "served": served, "foldin": foldin,
                        "graph_playlists": summary.get("graph_playlists_method")},
              "input": {"recs_version": recs.version, "model_version": summary.get("model_version"),
                        "graph_version": summary.get("graph_version"),
                        "ranker_version": summary.get("ranker_version"), "forced": force},
              "graph_version": ctx.committed.version,
              "tuned": {n: {k: v for k, v in p.items() if k != "grid"} for n, p in chosen.items()}}
    for name, ranked in progress(methods.items(), desc="scoring", unit="method"):
        rows = score(ranked, cases, artist_of, artist_id, evaluate_cfg.k, evaluate_cfg.k_small)
        ch = [i for i in range(len(rows)) if not is_seed[i]]
        sp = [i for i in range(len(rows)) if is_seed[i]]
        report["methods"][name] = {
            "challenge": metrics.aggregate([rows[i] for i in ch], [cases.category[i] for i in ch]),
            "seed_protocol": metrics.aggregate([rows[i] for i in sp])["all"],
            # per challenge-category case, in the order of "cases" below: paired comparisons
            # between methods (standard errors of a difference) need them
            "per_case": {m: [None if rows[i] is None else round(float(rows[i][m]), 6) for i in ch]
                         for m in ("ndcg", "r_precision", "clicks")},
        }
    report["cases"]["challenge_keys"] = [[int(cases.pid[i]), cases.category[i]] for i in ch]
    report["reachable"] = reachable(ctx, cases)
    report["graph_playlists"] = graph_playlists(ctx, recs, summary, split, artist_of, artist_id)
    report["seconds"] = round(time.time() - t0, 1)
    out = storage.StageWriter(storage.stage_uri(cfg, "metrics"))
    storage.write_json(out.path("metrics.json"), report)
    for metric in metrics.metric_names(evaluate_cfg.k_small, artists=True):
        png = chart(report, metric)
        if png:
            storage.write_bytes(out.path(f"{metric.replace('@', '_at_')}.png"), png)
    out.commit({"stage": "metrics", "split": split})
    report["out"] = out.uri
    return report


def chart(report: dict, metric: str) -> bytes | None:
    matplotlib.use("Agg")
    methods = list(report["methods"])
    cats = [c for c in CHALLENGE if c in report["methods"][methods[0]]["challenge"]] + ["all"]
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        vals = [report["methods"][m]["challenge"].get(c, {}).get(metric, np.nan) for c in cats]
        ax.bar(np.arange(len(cats)) + j * width, vals, width, label=m)
    ax.set_xticks(np.arange(len(cats)) + width * (len(methods) - 1) / 2, cats, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by challenge category ({report['split']})")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def format_report(report: dict) -> str:
    ks = report["k_small"]
    cols = metrics.metric_names(ks, artists=True)
    head = [HEADS[c] if "@" not in c else f"{HEADS[c.split('@')[0]]}@{ks}" for c in cols]
    methods = report["methods"]
    c = report["cases"]
    drawn = (f" of {c['playlists_drawn']:,} playlists drawn from its {c['playlists']:,} (evaluate.max_playlists)"
             if c.get("playlists_drawn", 0) < c.get("playlists", 0) else "")
    lines = [f"Evaluation on the {report['split']} split: {c['challenge_categories']:,} "
             f"challenge-category cases, {c['seed_protocol']:,} seed-protocol cases{drawn} "
             f"(NDCG: 1/log2(i+1) discount, organisers' code; clicks: lower is better)",
             f"held-out tracks that can be recommended at all: {report['reachable']['catalogue']:.0%} (in the "
             f"catalogue), {report['reachable']['embedded']:.0%} (embedded by LightGCN); cases with seeds but "
             f"none embedded: {no_vector_share(report['reachable']):.1%}",
             f"{'method':<19}" + "".join(f"{h:>11}" for h in head)]
    if report["split"] == "val" and report["model"].get("served") == "ranker":
        lines.insert(1, "(the ranker was fitted on these validation playlists, so its numbers here are "
                        "in-sample; `musicmap fit-ranker` prints cross-validated ones)")
    for m, r in methods.items():
        a = r["challenge"]["all"]
        lines.append(f"{m:<19}" + "".join(f"{a.get(c, float('nan')):>11.4f}" for c in cols))
    lines.append("")
    lines.append("NDCG by challenge category:")
    lines.append(f"{'category':<18}{'cases':>7}" + "".join(f"{m[:17]:>18}" for m in methods))
    first = next(iter(methods.values()))["challenge"]
    for c in CHALLENGE:
        if c in first:
            lines.append(f"{c:<18}{first[c]['cases']:>7}" + "".join(
                f"{methods[m]['challenge'][c].get('ndcg', float('nan')):>18.4f}" for m in methods))
    lines.append("")
    lines.append("Seed system's protocol (first half of each playlist as seeds):")
    for m, r in methods.items():
        s = r["seed_protocol"]
        lines.append(f"  {m:<19} P@{ks} {100 * s.get(f'precision@{ks}', float('nan')):6.2f}%   "
                     f"HR@{ks} {100 * s.get(f'hit_rate@{ks}', float('nan')):6.2f}%   "
                     f"NDCG {s.get('ndcg', float('nan')):.4f}   R-prec {s.get('r_precision', float('nan')):.4f}"
                     f"   ({s['cases']:,} playlists)")
    lines.append(f"  {'seed system':<19} P@20 {100 * SEED_SYSTEM['precision@20']:6.2f}%   "
                 f"HR@20 {100 * SEED_SYSTEM['hit_rate@20']:6.2f}%   (published; its own split and data)")
    g = report.get("graph_playlists")
    if g:
        lines += ["", f"Graph playlists ({g['cases']:,} with held-out tracks; ranked from their other tracks"
                      + ("" if g["served_written"] else "; recommend wrote no graph playlists") + "):"]
        for m, r in g["methods"].items():
            lines.append(f"  {m:<24} NDCG {r['ndcg']:.4f}   R-prec {r['r_precision']:.4f}   clicks {r['clicks']:.2f}")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--split", choices=["val", "test"], help="cases to evaluate on (evaluate.split)")
    p.add_argument("--force", action="store_true",
                   help="score the committed recommendations even if they were made from another model, "
                        "graph or ranker than the committed ones")


def run_cli(args) -> int:
    cfg = config_from_args(args, [f"evaluate.split={args.split}"] if args.split else [])
    report = run(cfg, cfg.evaluate.split, force=args.force)
    print(format_report(report))
    print(f"metrics written to {report['out']}")
    return 0
