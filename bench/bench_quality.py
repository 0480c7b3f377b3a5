"""Recommendation quality (issue 11): the whole pipeline at the defaults on real and generated
data, every method of the harness on the same test cases, per category group and on the seed
protocol, over several seeds, with the time each stage took.

    python -m bench.bench_quality                                  # ml-small and synth, 3 seeds
    python -m bench.bench_quality --sets ml-small,ml-100k,synth --random-seeds 0,1,2 --transductive
    python -m bench.bench_quality --sets ml-small --random-seeds 0 --quick

Data sets (written once under bench/out/quality/<set>/mpd):
  ml-small  MovieLens latest-small as MPD slices: ../shared/realdata/movielens_small.sh (the
            project's reference real set; MUSICMAP_REALDATA names the folder of that script).
  ml-100k   MovieLens 100K as MPD slices: bench/realdata/ml100k.sh.
  synth     `musicmap synth` at the demo's size (20,000 playlists), conf/demo.yaml.
  synth-5k  the same at 5,000 playlists (a quick comparison of settings, e.g. the LightGCN cap).

Per set, as a user runs it (each a `musicmap` command in a subprocess, default config unless
the set says otherwise): build-graph once, then for each seed (train.random_seed and ranker.random_seed):
train --nproc 2, fit-ranker, recommend --playlists test, evaluate. The served method (what
recommend serves by default), LightGCN alone and the baselines are scored by evaluate on the
same test cases; the fold-in modes are scored here on the same cases with the project's
recommenders. --transductive also trains, per protocol, a model whose graph holds the test and
validation cases' seeds as extra playlist nodes (never their holdouts; the challenge-category
cases and the seed-protocol cases in separate graphs, since one playlist's two cases would leak
each other's holdouts) and scores those cases by their node embeddings.

Writes bench/out/quality/quality.json and prints the tables BENCHMARKS.md holds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
import numpy as np

from bench.bench_quality_lib import GROUPS, METRICS, score_foldins, summarise, transductive_scores
from musicmap import storage
from musicmap.tools.evaluate import no_vector_share

OUT = REPO / "bench" / "out" / "quality"
SETS = {"ml-small": {"config": None}, "ml-100k": {"config": None},
        "synth": {"config": str(REPO / "conf" / "demo.yaml")},
        "synth-5k": {"config": str(REPO / "conf" / "demo.yaml")}}   # 5,000 generated playlists


def sh(cmd: list[str], env: dict | None = None) -> float:
    """Run a command, fail loudly with its output; return its wall seconds."""
    t = time.time()
    p = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, **(env or {})), capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"bench_quality: {' '.join(cmd)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return time.time() - t


def musicmap(*args: str) -> float:
    return sh([sys.executable, "-m", "musicmap.cli", "-q", *args])


def make_data(name: str, root: Path, quick: bool) -> None:
    mpd = root / "mpd"
    if any(mpd.glob("mpd.slice.*.json")):
        return
    shared = Path(os.environ.get("MUSICMAP_REALDATA", REPO.parent / "shared" / "realdata"))
    if name == "ml-small":
        sh(["bash", str(shared / "movielens_small.sh"), str(mpd)])
    elif name == "ml-100k":
        sh(["bash", str(REPO / "bench" / "realdata" / "ml100k.sh"), str(mpd)],
           env={"MUSICMAP_REALDATA": str(shared), "PYTHON": sys.executable})
    else:
        musicmap("synth", "--config", SETS["synth"]["config"], "--out", str(mpd),
                 "--playlists", "5000" if quick or name == "synth-5k" else "20000", "--challenge")


def paired(report: dict, a: str, b: str) -> dict:
    """{group: {metric: (mean of a - b, its standard error)}} over the same challenge cases."""
    cats = [c for _, c in report["cases"]["challenge_keys"]]
    groups = {"all": list(range(len(cats)))}
    for g, members in GROUPS.items():
        groups[g] = [i for i, c in enumerate(cats) if c in members]
    out = {}
    for g, idx in groups.items():
        out[g] = {}
        for k in METRICS:
            x = [report["methods"][a]["per_case"][k][i] for i in idx]
            y = [report["methods"][b]["per_case"][k][i] for i in idx]
            d = [u - v for u, v in zip(x, y) if u is not None and v is not None]
            if len(d) > 1:
                out[g][k] = (float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(len(d))))
    return out


def run_set(name: str, seeds: list[int], quick: bool, transductive: bool, overrides=(), rebuild=True) -> dict:
    root = OUT / name
    make_data(name, root, quick)
    conf = SETS[name]["config"]
    common = ["--root", str(root)] + (["--config", conf] if conf else []) + [a for o in overrides for a in ("--set", o)]
    res = {"set": name, "seeds": {}, "times": {}, "overrides": list(overrides)}
    if rebuild or not (root / "graph" / "_SUCCESS").exists():
        res["times"]["build-graph"] = musicmap("build-graph", *common)
    g = json.loads((root / "graph" / "_SUCCESS").read_text())
    res["graph"] = {k: g[k] for k in ("graph_playlists", "tracks", "edges")}
    for random_seed in seeds:
        s = [*common, "--set", f"train.random_seed={random_seed}", "--set", f"ranker.random_seed={random_seed}", "--set", "train.progress=false"]
        t = {"train": musicmap("train", *s, "--nproc", "2"),
             "fit-ranker": musicmap("fit-ranker", *s),
             "recommend": musicmap("recommend", *s, "--playlists", "all"),
             "evaluate": musicmap("evaluate", *s)}
        report = storage.read_json(storage.open_committed(str(root / "metrics")).path("metrics.json"))
        ranker = storage.read_json(storage.open_committed(str(root / "ranker")).path("manifest.json"))
        committed_model = storage.open_committed(str(root / "model"))
        model = storage.read_json(committed_model.path("manifest.json"))
        history = storage.read_json(committed_model.path("history.json"))
        (root / f"training-seed{random_seed}.png").write_bytes(storage.read_bytes(committed_model.path("training.png")))
        yard = [m for m in ("rp3beta", "ease", "cooccurrence", "lightgcn") if m in report["methods"]]
        served = report["model"]["served"]
        res["seeds"][random_seed] = {"test": summarise(report), "served": served,
                              "vs": {m: paired(report, served, m) for m in yard if m != served},
                              "reachable": report["reachable"], "tuned": report.get("tuned"),
                              "times": t, "foldin_val": {m: v["ndcg"] for m, v in model["foldin"]["val"].items()},
                              "foldin_chosen": model["foldin"]["chosen"], "best_epoch": model["best"]["epoch"],
                              "steps_per_epoch": model["steps_per_epoch"],
                              "embedded": model["tracks"], "lightgcn_edges": model["edges"],
                              "epoch_seconds": round(sum(h["seconds"] for h in history) / max(len(history), 1), 2),
                              "curve": [(h["epoch"], round(h["loss"], 4), h.get("val", {}).get("ndcg"))
                                        for h in history],
                              "ranker_cv": ranker["cross_validation"]["methods"],
                              "ranker_chosen": ranker["chosen"], "no_seed": ranker["no_seed_cases"],
                              "foldin_test": score_foldins(root, conf)}
        if transductive:
            res["seeds"][random_seed]["transductive_test"] = {"both protocols": transductive_scores(root, conf, random_seed)}
        print(f"  {name} seed {random_seed}: served {report['model']['served']}, "
              + ", ".join(f"{m} {v['all']['ndcg']:.4f}" for m, v in res["seeds"][random_seed]["test"].items()),
              flush=True)
    return res


def table(res: dict) -> str:
    """Markdown: mean ± std over seeds of NDCG, R-precision and clicks per method and group, then
    the served method against each tuned baseline (paired over the same cases: mean difference and
    whether it is more than two standard errors), reachability and the graph playlists."""
    seeds = list(res["seeds"].values())
    methods = [m for m in seeds[0]["test"] if not m.startswith("graph: ")]
    cols = ["all", *GROUPS, "seed_protocol"]
    head = "| method | " + " | ".join(f"{c} NDCG | R-prec | clicks" for c in cols) + " |"
    lines = [head, "|" + " --- |" * (1 + 3 * len(cols))]

    def cell(vals, digits=4):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "-"
        return f"{np.mean(vals):.{digits}f}" + (f" ± {np.std(vals):.{digits}f}" if len(vals) > 1 else "")
    for m in methods:
        row = [m]
        for c in cols:
            for k in METRICS:
                row.append(cell([s["test"][m].get(c, {}).get(k) for s in seeds], 2 if k == "clicks" else 4))
        lines.append("| " + " | ".join(row) + " |")
    extra = {}
    for s in seeds:
        for label, v in s["foldin_test"].items():
            extra.setdefault(f"lightgcn, fold-in {label}", []).append(v)
        for label, v in s.get("transductive_test", {}).items():
            extra.setdefault(f"lightgcn, transductive ({label})", []).append(v)
    for label, vs in extra.items():
        row = [label]
        for c in cols:
            for k in METRICS:
                row.append(cell([v.get(c, {}).get(k) for v in vs], 2 if k == "clicks" else 4))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", verdicts(seeds), "", reach_and_graph(seeds)]
    return "\n".join(lines)


def verdicts(seeds: list[dict]) -> str:
    """The served method against each baseline: mean difference over seeds and cases, and
    'beats' / 'ties' (within two standard errors) / 'loses' per group and metric."""
    served = seeds[0]["served"]
    lines = [f"| {served} against | " + " | ".join(f"{g} NDCG | R-prec | clicks" for g in ("all", *GROUPS)) + " |",
             "|" + " --- |" * (1 + 3 * (1 + len(GROUPS)))]
    for other in seeds[0]["vs"]:
        row = [other]
        for g in ("all", *GROUPS):
            for k in METRICS:
                got = [s["vs"][other].get(g, {}).get(k) for s in seeds]
                got = [x for x in got if x is not None]
                if not got:
                    row.append("-")
                    continue
                d = float(np.mean([x[0] for x in got]))
                se = float(np.sqrt(sum(x[1] ** 2 for x in got)) / len(got))
                better = -d if k == "clicks" else d          # clicks: lower is better
                word = "beats" if better > 2 * se else "loses" if better < -2 * se else "ties"
                row.append(f"{d:+.4f} ± {2 * se:.4f} {word}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def reach_and_graph(seeds: list[dict]) -> str:
    r = seeds[0]["reachable"]
    lines = [f"Held-out test tracks that can be recommended at all: {r['catalogue']:.1%} (in the catalogue), "
             f"{r['embedded']:.1%} (embedded by LightGCN), of {r['holdouts']:,}.", ""]
    if "no_embedded_seed" in r:
        none = r["no_embedded_seed"]
        one = none.get("title_first1", {"cases": 0, "of_seeded": 0})
        lines[-1:-1] = [f"Cases with seeds but none embedded by LightGCN: {no_vector_share(r):.1%} "
                        f"({sum(c['cases'] for c in none.values()):,} of {sum(c['of_seeded'] for c in none.values()):,}); "
                        f"title_first1: {one['cases']:,} of {one['of_seeded']:,}."]
    graph = [m for m in seeds[0]["test"] if m.startswith("graph: ")]
    if graph:
        lines += ["| graph playlists (held-out tracks) | NDCG | R-prec | clicks |", "| --- | --- | --- | --- |"]
        for m in graph:
            vals = {k: [s["test"][m]["all"][k] for s in seeds if m in s["test"]] for k in METRICS}
            lines.append(f"| {m[7:]} | " + " | ".join(f"{np.mean(v):.4f}" if k != "clicks" else f"{np.mean(v):.2f}"
                                                  for k, v in vals.items()) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="ml-small,synth", help=f"comma list of {', '.join(SETS)}")
    ap.add_argument("--random-seeds", "--seeds", dest="seeds", default="0,1,2", help="train.random_seed / ranker.random_seed values")
    ap.add_argument("--transductive", action="store_true", help="also measure the transductive mode")
    ap.add_argument("--quick", action="store_true", help="synth at 5,000 playlists")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="a config override for every stage (e.g. model.embed_min_playlists=5)")
    ap.add_argument("--tag", default="", help="results saved under <set>/<tag> (e.g. cap5)")
    ap.add_argument("--reuse-graph", action="store_true", help="keep the committed graph (no build-graph)")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    results, saved = {}, OUT / "quality.json"
    everything = json.loads(saved.read_text()) if saved.exists() else {}   # other sets' runs stay
    for name in args.sets.split(","):
        print(f"== {name}", flush=True)
        key = f"{name}/{args.tag}" if args.tag else name
        results[key] = everything[key] = run_set(name, seeds, args.quick, args.transductive, args.overrides,
                                                 rebuild=not args.reuse_graph)
        saved.write_text(json.dumps(everything, indent=1, default=str))
    for name, res in results.items():
        t = {k: round(sum(s["times"][k] for s in res["seeds"].values()) / len(res["seeds"]), 1)
             for k in next(iter(res["seeds"].values()))["times"]}
        built = f" (build-graph {res['times']['build-graph']:.1f})" if "build-graph" in res["times"] else ""
        print(f"\n### {name} {' '.join(res.get('overrides', []))}: {res['graph']}; seconds per stage {t}{built}")
        one = next(iter(res["seeds"].values()))
        print(f"LightGCN embeds {one['embedded']:,} of {res['graph']['tracks']:,} catalogue tracks "
              f"({one['lightgcn_edges']:,} of {res['graph']['edges']:,} edges), "
              f"{one['epoch_seconds']:.1f} s per epoch, {one['best_epoch']} epochs to its best")
        print(table(res))
    print(f"\nresults in {OUT / 'quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
