"""Top-500 scoring benchmark (issue 5): musicmap.topk.topk against the machine's matrix-multiply
rate and against a naive full-sort reference, on random embeddings at the seed system's scale.

    python -m bench.bench_recommend                          # 177K tracks x 64, 2,048 queries (CPU)
    python -m bench.bench_recommend --quick                  # smoke run (512 queries, 2 repeats)
    python -m bench.bench_recommend --device cuda --full-mpd # 2.26M tracks, a slice, extrapolated to 1M

What is measured (all on the same inputs, wall clock, best of --repeats, rounds interleaved so a
busy machine hurts every method alike; torch threads = torch's default unless --threads)
  inputs     items (T, d) ~ N(0, 1) float32; each query playlist has 1..100 seed tracks (uniform),
             drawn by popularity (Zipf over a random order of the tracks), and its query vector is
             the LightGCN fold-in of its seeds (musicmap.train.foldin.seed_queries(seeds, items, items)),
             so seeds score high and the exclusion matters.
  matmul     torch.mm((chunk, d) @ (d, T), out=preallocated) over all queries, for every chunk
             tried; the machine's rate is the best of them: 2*n*d*T / seconds.
  ours       musicmap.topk.topk(q, items, 500, exclude=seeds, chunk=C) (the project's function,
             unchanged) for C in --chunks (the default 1024 among them; on CPU it multiplies at
             most scoring.CPU_ROWS = 512 rows at a time, so chunks above that time the same). It
             scores into one reused buffer (items.t() as a view, no copy) and, when
             T >= 2*k*GROUP**2 (64,000 for k = 500), selects with the exact two-level top-k
             (scoring._two_level_topk: column-group maxima -> top-k groups -> top-k of their
             columns, ~3 x GROUP x k values per row through torch.topk instead of T). Effective
             GFLOP/s = 2*n*d*T / seconds; playlists/s = n / seconds; % of the matmul rate.
  ablation   "ours with a single torch.topk": the same musicmap.topk.topk (chunk=1024) with the
             two-level path switched off (scoring.GROUP set so large for the call that
             T >= 2*k*GROUP**2 never holds, so every block goes through one torch.topk over its T
             columns; scoring._two_level_topk is replaced by a function that raises meanwhile):
             what the two-level selection buys, everything else equal.
  naive      the whole (n, T) score matrix, a full descending sort of every row (torch.sort), the
             seeds removed from each sorted row, its first 500 kept.
  checks     ours, the ablation and naive must give the same top-500 per query up to ties (items that
             differ must score within 1e-5 x the row's top score of the 500th score, in float64),
             descending scores, never a seed, -1 / -inf padding only where fewer items are left;
             plus small edge cases of scoring.topk, with and without the two-level path
             (T < k, every item excluded, n < chunk, n = 0).
  --full-mpd T = 2,262,292 tracks; --queries playlists are timed and seconds are extrapolated
             linearly to 1,000,000 playlists (the full MPD's train playlists plus cases). On cuda
             the matmul is fp32 as torch runs it by default (TF32 off).

Results print as a table and go to --out (JSON, default
bench/out/bench_recommend[_full][_quick]_<device>_<clock>.json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np
import torch

from musicmap import topk as scoring
from musicmap.topk import topk
from musicmap.train.foldin import seed_queries

SEED_TRACKS, MPD_TRACKS, MPD_PLAYLISTS = 177_000, 2_262_292, 1_000_000
SINGLE = "ours with a single torch.topk (chunk=1024)"   # the ablation row


# ----------------------------------------------------------------------------- ablation

@contextmanager
def single_topk():
    """Inside: musicmap.topk.topk selects every block with one torch.topk (its plain path).

    topk takes the two-level path when T >= 2*k*GROUP**2; with GROUP = 2**40 that never holds, so
    W = T (no padding) and torch.topk(s, k) runs on the full block. _two_level_topk is replaced
    by a function that raises, so a two-level call could not pass unnoticed."""
    def refuse(*_a, **_kw):
        raise AssertionError("single_topk: the two-level path ran")
    saved = scoring.GROUP, scoring._two_level_topk
    scoring.GROUP, scoring._two_level_topk = 1 << 40, refuse
    try:
        yield
    finally:
        scoring.GROUP, scoring._two_level_topk = saved


def topk_single(*args, **kw):
    """musicmap.topk.topk with its two-level selection off (same arguments and result)."""
    with single_topk():
        return topk(*args, **kw)


# ----------------------------------------------------------------------------- naive reference

@torch.no_grad()
def naive_topk(queries: torch.Tensor, items: torch.Tensor, k: int,
               exclude: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Full score matrix, full sort of every row, seeds removed, first k kept."""
    n = queries.shape[0]
    S = queries @ items.t()                                            # (n, T)
    vals, order = torch.sort(S, dim=1, descending=True)
    m = min(S.shape[1], k + max((len(e) for e in exclude), default=0))
    vals, order = vals[:, :m].cpu().numpy(), order[:, :m].cpu().numpy()
    out_s = np.full((n, k), -np.inf, np.float32)
    out_i = np.full((n, k), -1, np.int64)
    for i in range(n):
        keep = ~np.isin(order[i], exclude[i])
        o, v = order[i][keep][:k], vals[i][keep][:k]
        out_i[i, :len(o)], out_s[i, :len(o)] = o, v
    return out_i, out_s


# ----------------------------------------------------------------------------- checks

def check_same(name: str, ids: np.ndarray, scores: np.ndarray, ref_ids: np.ndarray,
               q64: np.ndarray, items64: np.ndarray, exclude: list[np.ndarray], tol: float = 1e-5
               ) -> list[str]:
    """Problems of (ids, scores) against a reference top-k, ties allowed."""
    problems = []
    n, k = ids.shape
    if ids.dtype != np.int64 or scores.dtype != np.float32 or scores.shape != (n, k):
        problems.append(f"{name}: dtypes/shapes {ids.dtype} {scores.dtype} {scores.shape}")
    fin = np.isfinite(scores)
    if ((ids < 0) != ~fin).any():
        problems.append(f"{name}: -1 ids and -inf scores do not line up")
    with np.errstate(invalid="ignore"):
        d = np.diff(np.where(fin, scores, -np.inf), axis=1)
    if (d[np.isfinite(d)] > 0).any():
        problems.append(f"{name}: scores not in descending order")
    bad_rows = 0
    for i in range(n):
        a, b = ids[i][ids[i] >= 0], ref_ids[i][ref_ids[i] >= 0]
        if np.isin(a, exclude[i]).any():
            problems.append(f"{name}: row {i} holds an excluded item")
            break
        if len(a) != len(b) or len(np.unique(a)) != len(a):
            bad_rows += 1
            continue
        diff = np.setxor1d(a, b)
        if len(diff):
            sd = items64[diff] @ q64[i]
            kth = min((items64[a] @ q64[i]).min(), (items64[b] @ q64[i]).min())
            scale = max(1.0, float(np.abs(items64[b[:1]] @ q64[i]).max()))
            if (np.abs(sd - kth) > tol * scale).any():
                bad_rows += 1
    if bad_rows:
        problems.append(f"{name}: {bad_rows} of {n} rows differ from the reference beyond ties")
    return problems


def edge_case_problems(fn) -> list[str]:
    """Small cases the contract promises: padding, all excluded, n < chunk, k > T."""
    g = torch.Generator().manual_seed(1)
    problems = []
    for T, n, k, chunk in ((50, 7, 500, 4), (70_000, 5, 500, 1024), (70_000, 300, 500, 64),
                           (3, 2, 5, 1024), (70_000, 0, 500, 64)):
        items = torch.randn(T, 8, generator=g)
        q = torch.randn(n, 8, generator=g)
        rng = np.random.default_rng(T + n)
        exclude = [rng.choice(T, min(T, int(rng.integers(0, 40))), replace=False) for _ in range(n)]
        if n:
            exclude[0] = np.arange(T)                   # everything excluded: all padding
        i, s = fn(q, items, k, exclude=exclude, chunk=chunk)
        ri, _ = naive_topk(q, items, k, exclude)
        if s.shape != (n, k) or i.shape != (n, k):
            problems.append(f"edge T={T} n={n}: shapes {s.shape} {i.shape}")
            continue
        if n and not ((i[0] == -1).all() and np.isneginf(s[0]).all()):
            problems.append(f"edge T={T}: a fully excluded row is not all padding")
        problems += [f"edge T={T} n={n} k={k}: {p}" for p in check_same(
            "edge", i, s, ri, q.double().numpy(), items.double().numpy(), exclude)]
    return problems


# ----------------------------------------------------------------------------- timing

def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_pass(q: torch.Tensor, items_t: torch.Tensor, chunk: int) -> None:
    buf = torch.empty(min(chunk, q.shape[0]), items_t.shape[1], dtype=q.dtype, device=q.device)
    for lo in range(0, q.shape[0], chunk):
        part = q[lo:lo + chunk]
        torch.mm(part, items_t, out=buf[:part.shape[0]])


CLOCK = time.perf_counter


def _once(f, device: str) -> float:
    sync(device)
    t = CLOCK()
    f()
    sync(device)
    return CLOCK() - t


def timed_rounds(fns: dict, repeats: int, device: str, warmup: bool = True,
                 pair=None) -> tuple[dict, dict]:
    """Best seconds (CLOCK) of each function, rounds interleaved (one warm-up call each first).
    pair: a matmul pass over the same queries, timed right before each call of each function; the
    second result holds, per function, the ratios matmul seconds / function seconds of each round
    (the paired share of the matmul rate, robust to the machine's load drifting between rounds)."""
    best, ratios = {}, {}
    for name, f in fns.items():
        if warmup:
            f()
        sync(device)
    for _ in range(repeats):
        for name, f in fns.items():
            tp = _once(pair, device) if pair is not None else None
            t = _once(f, device)
            best[name] = min(best.get(name, math.inf), t)
            if tp is not None:
                ratios.setdefault(name, []).append(tp / t)
    return best, ratios


def make_inputs(T: int, d: int, n: int, device: str, random_seed: int):
    g = torch.Generator().manual_seed(random_seed)
    items = torch.randn(T, d, generator=g)
    rng = np.random.default_rng(random_seed)
    # popularity-skewed seeds: Zipf weights over a random order of the tracks
    w = 1.0 / np.arange(1, T + 1) ** 0.9
    w = w[rng.permutation(T)]
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    seeds = []
    for m in rng.integers(1, 101, n):
        s = np.unique(np.minimum(np.searchsorted(cdf, rng.random(int(m))), T - 1))
        seeds.append(s.astype(np.int64))
    items = items.to(device)
    q = seed_queries(seeds, items, items, "lightgcn")
    return items, q, seeds


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--full-mpd", action="store_true", help="2.26M tracks; extrapolate to 1M playlists")
    ap.add_argument("--tracks", type=int, help=f"T (default {SEED_TRACKS:,}; {MPD_TRACKS:,} with --full-mpd)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--queries", type=int, help="timed playlists (default 2048; 512 with --quick; "
                    "16384 on cuda with --full-mpd)")
    ap.add_argument("--naive-queries", type=int, help="playlists for the naive reference (default: "
                    "all; with --full-mpd 128 on cpu, 512 on cuda: the sort of 512 x 2.26M needs ~19 GB)")
    ap.add_argument("--chunks", default="64,128,256,1024", help="chunk sizes for musicmap.topk.topk")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own; 1 with --clock cpu)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: time.perf_counter; cpu: time.process_time of one thread (on a shared, "
                    "busy machine this leaves out the time other processes hold the core)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: 512 queries, 2 repeats")
    ap.add_argument("--random-seed", type=int, default=0)
    ap.add_argument("--out", help="result JSON")
    args = ap.parse_args(argv)
    if args.clock == "cpu" and (args.device == "cuda" or (args.threads or 1) != 1):
        ap.error("--clock cpu measures one CPU thread: use it with --device cpu --threads 1")
    return args


def sizes(args) -> dict:
    """T, n, the naive reference's n, repeats and chunk sizes from the arguments."""
    dev = args.device
    T = args.tracks or (MPD_TRACKS if args.full_mpd else SEED_TRACKS)
    n = args.queries or (512 if args.quick else (16384 if args.full_mpd and dev == "cuda" else 2048))
    n_naive = args.naive_queries or (n if not args.full_mpd else (512 if dev == "cuda" else 128))
    return {"T": T, "n": n, "n_naive": min(n_naive, n),
            "repeats": 2 if args.quick and args.repeats == 3 else args.repeats,
            "chunks": sorted({int(c) for c in args.chunks.split(",")} | {1024})}


def check(q, items, items_t, seeds, k, n_naive, skip_naive) -> tuple[list[str], float]:
    """Every method against the others (and the naive full sort), before timing (it also warms
    everything up): the problems found, and the share of rows whose unexcluded top-k holds a seed."""
    problems = [f"ours {p}" for p in edge_case_problems(topk)]
    problems += [f"single-topk {p}" for p in edge_case_problems(topk_single)]
    ours_i, ours_s = topk(q, items, k, exclude=seeds, chunk=1024)
    one_i, one_s = topk_single(q, items, k, exclude=seeds, chunk=1024)
    q64, it64 = q.double().cpu().numpy(), items.double().cpu().numpy()
    if not skip_naive:
        naive_i, naive_s = naive_topk(q[:n_naive], items, k, seeds[:n_naive])
        problems += check_same("naive-vs-ours", naive_i, naive_s, ours_i[:n_naive], q64, it64, seeds)
        problems += check_same("ours-vs-naive", ours_i[:n_naive], ours_s[:n_naive], naive_i, q64, it64, seeds)
    problems += check_same("ours-vs-single-topk", ours_i, ours_s, one_i, q64, it64, seeds)
    problems += check_same("single-topk-vs-ours", one_i, one_s, ours_i, q64, it64, seeds)
    m = min(len(q), 256)   # sanity: without the exclusion, seeds would sit in the top-k
    raw = torch.topk(q[:m] @ items_t, min(k, items.shape[0]), dim=1).indices.cpu().numpy()
    seeds_in_top = float(np.mean([np.isin(seeds[i], raw[i]).any() for i in range(m)]))
    return problems, seeds_in_top


def time_methods(q, items, items_t, seeds, k, z, dev, skip_naive) -> tuple[dict, dict, str]:
    """(best seconds, paired ratios, the best matmul's name): the matmul at every chunk, then each
    method paired with the best matmul."""
    mm_fns = {f"matmul chunk={c}": (lambda c=c: matmul_pass(q, items_t, c)) for c in z["chunks"]}
    best, _ = timed_rounds(mm_fns, z["repeats"], dev)
    mm_chunk = int(min(best, key=best.get).split("=")[1])
    fns = {f"ours topk chunk={c}": (lambda c=c: topk(q, items, k, exclude=seeds, chunk=c)) for c in z["chunks"]}
    fns[SINGLE] = lambda: topk_single(q, items, k, exclude=seeds, chunk=1024)
    b, paired = timed_rounds(fns, z["repeats"], dev, pair=lambda: matmul_pass(q, items_t, mm_chunk))
    best.update(b)
    if not skip_naive:
        qn, nn = q[:z["n_naive"]], z["n_naive"]
        b, p = timed_rounds({"naive full sort": lambda: naive_topk(qn, items, k, seeds[:nn])},
                            max(1, z["repeats"] - 1), dev, warmup=False,
                            pair=lambda: matmul_pass(qn, items_t, mm_chunk))
        best.update(b)
        paired.update(p)
    mm_best = {x: t for x, t in best.items() if x.startswith("matmul")}
    return best, paired, min(mm_best, key=mm_best.get)


def result_rows(best: dict, paired: dict, mm_name: str, z: dict, d: int) -> list[dict]:
    mm_rate = 2.0 * z["n"] * d * z["T"] / best[mm_name] / 1e9
    rows = []
    for name, secs in best.items():
        nq = z["n_naive"] if name.startswith("naive") else z["n"]
        f = 2.0 * nq * d * z["T"]
        pr = paired.get(name)
        rows.append({"method": name, "seconds": secs, "queries": nq, "playlists_per_s": nq / secs,
                     "gflops": f / secs / 1e9, "pct_of_matmul": 100 * f / secs / 1e9 / mm_rate,
                     "pct_of_matmul_paired": 100 * float(np.median(pr)) if pr else None,
                     "paired_ratios": pr})
    return rows


def summarise(rows: list[dict], full_mpd: bool) -> dict:
    """The ratios the targets are about (and, with --full-mpd, the time for 1M playlists)."""
    by = {r["method"]: r for r in rows}
    best_ours = max((r for r in rows if r["method"].startswith("ours topk chunk=")), key=lambda r: r["playlists_per_s"])
    default, single, naive = by["ours topk chunk=1024"], by[SINGLE], by.get("naive full sort")
    summary = {
        "ours_default_pct_of_matmul": default["pct_of_matmul"],
        "ours_default_pct_of_matmul_paired": default["pct_of_matmul_paired"],
        "ours_best": best_ours["method"], "ours_best_pct_of_matmul": best_ours["pct_of_matmul"],
        "single_topk_pct_of_matmul": single["pct_of_matmul"],
        "single_topk_pct_of_matmul_paired": single["pct_of_matmul_paired"],
        "two_level_speedup_vs_single_topk": default["playlists_per_s"] / single["playlists_per_s"],
    }
    if naive:
        summary.update({"ratio_default_vs_naive": default["playlists_per_s"] / naive["playlists_per_s"],
                        "ratio_best_ours_vs_naive": best_ours["playlists_per_s"] / naive["playlists_per_s"]})
    if full_mpd:
        summary["extrapolated_seconds_1M_playlists"] = {r["method"]: MPD_PLAYLISTS / r["playlists_per_s"] for r in rows}
    return summary


def print_report(rows: list[dict], summary: dict, mm_name: str, T: int) -> None:
    print(f"\n  {'method':42s} {'seconds':>8s} {'playlists/s':>12s} {'GFLOP/s':>8s} {'% matmul':>9s} "
          f"{'% paired':>9s}")
    for r in rows:
        pp = f"{r['pct_of_matmul_paired']:8.1f}%" if r["pct_of_matmul_paired"] is not None else f"{'':9s}"
        print(f"  {r['method']:42s} {r['seconds']:8.3f} {r['playlists_per_s']:12,.0f} "
              f"{r['gflops']:8.1f} {r['pct_of_matmul']:8.1f}% {pp}")
    print(f"  (% matmul: best time against the best matmul time; % paired: median over rounds of a "
          f"matmul pass timed just before the method)\n  machine's best matmul: {mm_name}")
    for key, v in summary.items():
        if key != "extrapolated_seconds_1M_playlists":
            print(f"  {key}: {v:.2f}" if isinstance(v, float) else f"  {key}: {v}")
    by = {r["method"]: r for r in rows}

    def met(r):
        return "MET" if min(r["pct_of_matmul"], r["pct_of_matmul_paired"]) >= 50 else "NOT MET"
    print(f"  target >= 50% of matmul (both measures): default {met(by['ours topk chunk=1024'])}, best chunk "
          f"{met(by[summary['ours_best']])} (with a single torch.topk: {met(by[SINGLE])})")
    if "ratio_default_vs_naive" in summary:
        print(f"  target >= 5x naive: default {'MET' if summary['ratio_default_vs_naive'] >= 5 else 'NOT MET'}")
    for name, s in summary.get("extrapolated_seconds_1M_playlists", {}).items():
        print(f"    {MPD_PLAYLISTS:,} playlists x {T:,} tracks, {name:42s} {s:9.1f} s ({s / 60:.1f} min)"
              f"{'  <= 2 min' if s <= 120 else ''}")


def main(argv=None) -> int:
    global CLOCK
    args = parse_args(argv)
    if args.clock == "cpu":
        args.threads, CLOCK = 1, time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_recommend: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    z, dev, d, k = sizes(args), args.device, args.dim, args.k
    load0 = os.getloadavg()
    print(f"bench_recommend: T={z['T']:,} d={d} k={k} queries={z['n']:,} (naive {z['n_naive']:,}) device={dev} "
          f"torch threads={torch.get_num_threads()} clock={args.clock} load avg {load0[0]:.1f}", flush=True)
    items, q, seeds = make_inputs(z["T"], d, z["n"], dev, args.random_seed)
    items_t = items.t().contiguous()
    problems, seeds_in_top = check(q, items, items_t, seeds, k, z["n_naive"], args.skip_naive)
    print(f"  rows whose unexcluded top-{k} holds a seed: {100 * seeds_in_top:.0f}% (the exclusion is exercised)"
          f"\n  checks: {'OK' if not problems else 'FAILED'}", flush=True)
    for p in problems:
        print(f"    {p}")
    best, paired, mm_name = time_methods(q, items, items_t, seeds, k, z, dev, args.skip_naive)
    rows = result_rows(best, paired, mm_name, z, d)
    summary = summarise(rows, args.full_mpd)
    print_report(rows, summary, mm_name, z["T"])
    load1 = os.getloadavg()
    print(f"  load average at start {load0[0]:.1f}, at end {load1[0]:.1f} (shared machine)")
    result = {"tracks": z["T"], "dim": d, "k": k, "queries": z["n"], "naive_queries": z["n_naive"], "device": dev,
              "device_name": torch.cuda.get_device_name() if dev == "cuda" else platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "clock": args.clock,
              "repeats": z["repeats"], "matmul_gflops": rows[[r["method"] for r in rows].index(mm_name)]["gflops"],
              "matmul_best": mm_name, "rows": rows, "summary": summary, "checks_ok": not problems,
              "rows_with_seed_in_unexcluded_topk": seeds_in_top, "problems": problems,
              "load_avg": [load0[0], load1[0]], "argv": sys.argv[1:] if argv is None else argv}
    out = Path(args.out) if args.out else REPO / "bench" / "out" / (
        f"bench_recommend{'_full' if args.full_mpd else ''}{'_quick' if args.quick else ''}_{dev}_{args.clock}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"  -> {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
