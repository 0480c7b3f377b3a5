"""What the whole catalogue costs (issue 22), on a committed graph:

- for each LightGCN cap (model.embed_min_playlists): the tracks it embeds, the embedding table's
  memory (weights and Adam's two moments), seconds per training step and per epoch (the trainer's
  own step: LightGCN's BPR forward, backward and Adam, one process), and the top-500 seconds per
  1,000 playlists against the embedded tracks;
- for each method that can serve graph playlists (recommend.graph_method): seconds to fit it and
  per 1,000 graph playlists, and that extrapolated to the MPD's 1M playlists on this machine.

    python -m bench.bench_catalogue --root bench/out/quality/synth [--caps 1,2,3,5] [--steps 10]

Prints a Markdown table per part; numbers are from one run, on the machine the benchmark runs on.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from musicmap import storage
from musicmap.cases import load_eval
from musicmap.config import load_config
from musicmap.graph import load_graph, load_tracks, uri_index
from musicmap.recommend import baselines
from musicmap.recommend.context import load_context
from musicmap.recommend.graph_playlists import GRAPH_METHODS, rank_graph_playlists
from musicmap.topk import topk
from musicmap.train import batches
from musicmap.train.model import LightGCN, bpr_loss


def cap_costs(root: str, caps: list[int], steps: int, cfg) -> list[dict]:
    graph, committed = load_graph(storage.join(root, "graph"))
    counts = load_tracks(committed, ["track_idx", "train_playlists"])["train_playlists"].to_numpy()
    out = []
    for cap in caps:
        g = graph.embedded(int((counts >= cap).sum()))
        adj = g.adjacency(False)
        model = LightGCN(g.num_playlists, g.num_tracks, cfg.model.dim, cfg.model.layers, cfg.model.init_std)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        batch = batches.per_rank_batch(g.num_edges, 1, cfg.train.batch_size, cfg.train.min_steps_per_epoch)
        gen = np.random.default_rng(0)
        ids = gen.integers(0, g.num_edges, (steps + 1, batch))
        times = []
        for s in range(steps + 1):                    # the first step warms up, and is not timed
            t0 = time.perf_counter()
            u = g.playlist[ids[s]]
            neg = batches.sample_negatives(g, u, cfg.train.negatives, True, gen)
            loss = bpr_loss(*model(adj, *(torch.from_numpy(a) for a in (u, g.track[ids[s]], neg))), cfg.train.l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        step_s = float(np.mean(times[1:]))
        epoch_steps = batches.steps_per_epoch(g.num_edges, 1, batch)
        with torch.no_grad():
            final, _ = model.embeddings(adj, torch.from_numpy(g.degrees(False)[g.num_playlists:]).float())
        q = final[:1000]
        t0 = time.perf_counter()
        topk(q, final[g.num_playlists:], 500)
        out.append({"cap": cap, "embedded": g.num_tracks, "catalogue": graph.num_tracks, "edges": g.num_edges,
                    "all_edges": graph.num_edges, "playlists": g.num_playlists,
                    "table_mib": (g.num_playlists + g.num_tracks) * cfg.model.dim * 4 * 3 / 2 ** 20,
                    "step_s": step_s, "epoch_steps": epoch_steps, "epoch_s": step_s * epoch_steps,
                    "top500_per_1000_s": time.perf_counter() - t0})
        print(f"  cap {cap}: {out[-1]}", flush=True)
    return out


def serving_costs(root: str, n: int, cfg) -> list[dict]:
    """Fit and per-1,000 seconds of each graph-playlist method, and the tuned baselines' tuning on
    the graph's validation cases (LightGCN only when a model is committed: bench/graphgen.py
    writes a graph alone)."""
    run_cfg = load_config(overrides=[f"storage.root={root}"])
    try:
        ctx = load_context(run_cfg, ranker=False)
    except storage.NotCommittedError:
        ctx = load_context(run_cfg, need_model=False, ranker=False)
    idx = np.random.default_rng(0).choice(ctx.graph.num_playlists, min(n, ctx.graph.num_playlists), replace=False)
    val = load_eval(ctx.committed, "val", uri_index(ctx.tracks))
    t0 = time.perf_counter()
    tuned = baselines.tune(ctx.graph, val, run_cfg.baselines)
    out = [{"method": "tune (RP3beta grid, EASE^R)", "fit_s": time.perf_counter() - t0,
            "cases": tuned["rp3beta"].get("cases", 0)}]
    print(f"  tune: {out[-1]} {tuned['rp3beta'].get('alpha')}/{tuned['rp3beta'].get('beta')}", flush=True)
    ctx.use_tuned(tuned)
    for method in GRAPH_METHODS if ctx.model is not None else GRAPH_METHODS[1:]:
        t0 = time.perf_counter()
        try:
            if method != "lightgcn":
                ctx.baseline(method)
        except Exception as e:  # noqa: BLE001 - EASE^R above its size: reported, not timed
            out.append({"method": method, "skipped": str(e)[:120]})
            continue
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rank_graph_playlists(ctx, idx, 500, method)
        per_1000 = (time.perf_counter() - t0) / len(idx) * 1000
        out.append({"method": method, "fit_s": fit_s, "per_1000_s": per_1000,
                    "mpd_hours": per_1000 * 1000 / 3600})
        print(f"  {method}: {out[-1]}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="a storage root with a committed graph (and model, for serving)")
    ap.add_argument("--caps", default="1,2,3,5")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per cap")
    ap.add_argument("--playlists", type=int, default=1000, help="graph playlists ranked per method")
    ap.add_argument("--skip-serving", action="store_true")
    ap.add_argument("--skip-caps", action="store_true", help="serving and tuning only")
    args = ap.parse_args(argv)
    cfg = load_config()
    torch.manual_seed(0)
    print(f"== caps on {args.root}", flush=True)
    caps = [] if args.skip_caps else cap_costs(args.root, [int(c) for c in args.caps.split(",")], args.steps, cfg)
    if caps:
        print("\n| cap | tracks embedded (of the catalogue) | edges | table + Adam | s per step | steps per epoch "
              "| s per epoch | top-500 s per 1,000 playlists |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for c in caps:
            print(f"| {c['cap']} | {c['embedded']:,} of {c['catalogue']:,} | {c['edges']:,} of {c['all_edges']:,} | "
                  f"{c['table_mib']:,.0f} MiB | {c['step_s']:.3f} | {c['epoch_steps']} | {c['epoch_s']:.1f} | "
                  f"{c['top500_per_1000_s']:.2f} |")
    if not args.skip_serving:
        print("\n== graph playlists, per method", flush=True)
        rows = serving_costs(args.root, args.playlists, cfg)
        print("\n| method | fit s | s per 1,000 graph playlists | the MPD's 1M, hours on this machine |")
        print("| --- | --- | --- | --- |")
        for r in rows:
            if "skipped" in r:
                print(f"| {r['method']} | skipped: {r['skipped']} | | |")
            elif "per_1000_s" not in r:
                print(f"| {r['method']} | {r['fit_s']:.1f} (on {r['cases']:,} validation cases) | | |")
            else:
                print(f"| {r['method']} | {r['fit_s']:.1f} | {r['per_1000_s']:.2f} | {r['mpd_hours']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
