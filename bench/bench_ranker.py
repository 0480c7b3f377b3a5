"""What the two-stage default costs (issue 11): recommend for 1,000 playlists with the ranker
against the LightGCN-only path, on the same graph, model and playlists, in one run.

    python -m bench.bench_ranker --scale seed       # 315K playlists, 177K tracks, 15.5M edges
    python -m bench.bench_ranker --scale small      # minutes

The graph is bench/graphgen.py's (in the graph contract, under bench/out/<scale>/). The model is
random embeddings (dimension 64) committed as a trained model: what is measured is the cost of
each path, which does not depend on the values. The ranker is fitted by `fit-ranker`'s own code
(recommend.fit_ranker.run) on --fit-playlists validation playlists of that graph. Measured, each in one
process on this machine's cores: the recommender of each path (`ctx.lightgcn()` and the Ranker
`recommend` serves) on the first --cases test cases (fold-in from their seeds): seconds per
1,000 playlists, the ratio, and the peak resident memory of each path. (Graph playlists always
get LightGCN alone, so the ranker has no graph-playlist path to measure.)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench import graphgen
from bench.common import ProcessTreeMemory
from musicmap import storage
from musicmap.cases import load_eval
from musicmap.config import load_config
from musicmap.graph import uri_index
from musicmap.recommend import fit_ranker
from musicmap.recommend.context import load_context
from musicmap.train.export import write_model

REPO = Path(__file__).resolve().parents[1]


def random_model(root: str, dim: int = 64, random_seed: int = 0) -> None:
    g = storage.open_committed(storage.join(root, "graph"))
    P, T = int(g.info["graph_playlists"]), int(g.info["tracks"])
    rng = np.random.default_rng(random_seed)
    vec = lambda n: (rng.standard_normal((n, dim)) * 0.1).astype(np.float32)  # noqa: E731
    manifest = {"dim": dim, "layers": 2, "playlists": P, "tracks": T, "best": {"epoch": 0, "ndcg": None},
                "foldin": {"chosen": "optimized", "val": {}}, "input": {"graph_version": g.version},
                "note": "random embeddings for bench/bench_ranker.py (cost, not quality)"}
    write_model(storage.StageWriter(storage.join(root, "model")), vec(P), vec(T), vec(T), manifest, [])


def timed(fn):
    with ProcessTreeMemory(os.getpid(), every=0.05) as mem:
        t = time.perf_counter()
        fn()
        secs = time.perf_counter() - t
    return secs, mem.total_peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="small", choices=["tiny", "small", "seed"])
    ap.add_argument("--cases", type=int, default=1000, help="playlists per measurement")
    ap.add_argument("--fit-playlists", type=int, default=200, help="validation playlists fit-ranker uses")
    a = ap.parse_args(argv)
    root = str(REPO / "bench" / "out" / a.scale)
    if not storage.exists(storage.join(root, "graph", "_SUCCESS")):
        s = graphgen.SCALES[a.scale]
        graphgen.generate(root, s["playlists"], s["tracks"], s["edges"], s["val"], s["test"])
    random_model(root)
    cfg = load_config(root=root, overrides=[f"ranker.max_playlists={a.fit_playlists}", "train.progress=false",
                                            "recommend.method=ranker"])
    t = time.perf_counter()
    fit = fit_ranker.run(cfg)
    fit_s = time.perf_counter() - t
    ctx = load_context(cfg)
    cases = load_eval(ctx.committed, "test", uri_index(ctx.tracks))
    cases = cases.subset(range(min(a.cases, len(cases))))
    lg, rk = ctx.lightgcn(), ctx.recommender()
    res = {"scale": a.scale, "graph": {k: ctx.committed.info[k] for k in ("graph_playlists", "tracks", "edges")},
           "cases": len(cases), "fit_ranker_seconds": round(fit_s, 1),
           "fit_cases": fit["manifest"]["cases"], "threads": torch.get_num_threads()}
    for label, fn in (("lightgcn, new playlists", lambda: lg.rank(cases.seeds, cases.name, 500)),
                      ("ranker, new playlists", lambda: rk.rank(cases.seeds, cases.name, 500))):
        n = len(cases)
        secs, peak = timed(fn)
        res[label] = {"seconds": round(secs, 2), "per_1000": round(secs * 1000 / n, 2), "peak_gb": round(peak / 2 ** 30, 2)}
        print(f"{label:28s} {secs:8.2f} s for {n:,} playlists: {secs * 1000 / n:7.2f} s per 1,000, "
              f"peak {peak / 2 ** 30:.2f} GB", flush=True)
    r = res["ranker, new playlists"]["per_1000"] / max(res["lightgcn, new playlists"]["per_1000"], 1e-9)
    res["ratio, new playlists"] = round(r, 1)
    print(f"ranker / lightgcn, new playlists: {r:.1f}x")
    out = Path(root) / "bench_ranker.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"fit-ranker: {fit_s:.1f} s on {fit['manifest']['cases']}; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
