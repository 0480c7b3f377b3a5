"""Run every benchmark script present in bench/, one after another (what `make bench` runs).

    python -m bench.run_all              # quick/smoke sizes: minutes on a laptop
    python -m bench.run_all --full       # the sizes the issues ask for (long on a small machine)
    python -m bench.run_all --only recommend,synth_check

Each script runs in its own process with this Python; its output streams through, and each
writes its own JSON under bench/out/. A summary of exit statuses and durations ends the run; the
exit status is 1 when any script failed. On a machine where torch sees a GPU, --full also runs the
GPU cases (bench_recommend.py --device cuda --full-mpd).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# name -> (script, quick arguments, full arguments); a script that is absent is skipped.
PLAN = {
    "synth_check": ("bench_synth_check.py", ["--quick"], []),
    "recommend": ("bench_recommend.py", ["--quick"], []),
    "build_graph": ("bench_build_graph.py", ["--quick"], []),
    "train": ("bench_train.py", ["--scale", "tiny", "--epochs", "1"],
              ["--scale", "seed", "--max-steps", "10", "--epochs", "2"]),
    "ranker": ("bench_ranker.py", ["--scale", "tiny", "--cases", "200"], ["--scale", "seed"]),
    "map": ("bench_map.py", ["--scale", "tiny", "--page-points", "20000"],
            ["--demo-root", "demo-data", "--scale", "seed", "--page-points", "600000"]),
    "quality": ("bench_quality.py", ["--sets", "synth", "--random-seeds", "0", "--quick"],
                ["--sets", "ml-small,ml-100k,synth", "--random-seeds", "0,1,2", "--transductive"]),
    # after quality: it measures the caps and the graph-playlist methods on quality's synth root
    "catalogue": ("bench_catalogue.py", ["--root", "bench/out/quality/synth", "--caps", "1,2", "--steps", "3",
                                         "--playlists", "200"],
                  ["--root", "bench/out/quality/synth"]),
    "synth_tail": ("bench_synth_tail.py", ["--sizes", "1000,3000"], []),
}


def _has_gpu() -> bool:
    try:
        return torch.cuda.is_available()
    except (ImportError, RuntimeError):
        return False


def plan(full: bool, only: set[str] | None) -> list[tuple[str, list[str]]]:
    runs = []
    for name, (script, quick, full_args) in PLAN.items():
        path = BENCH / script
        if (only and name not in only) or not path.exists():
            continue
        runs.append((name, [sys.executable, "-m", f"bench.{path.stem}", *(full_args if full else quick)]))
        if full and name == "recommend" and _has_gpu():
            runs.append(("recommend_gpu", [sys.executable, "-m", f"bench.{path.stem}", "--device", "cuda", "--full-mpd"]))
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="full-size runs instead of the quick ones")
    ap.add_argument("--only", help="comma list of: " + ", ".join(PLAN))
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    only = {x.strip() for x in args.only.split(",")} if args.only else None
    if only and only - set(PLAN):
        ap.error(f"unknown benchmark(s) {sorted(only - set(PLAN))}; known: {', '.join(PLAN)}")
    runs = plan(args.full, only)
    if not runs:
        print("run_all: no benchmark script found")
        return 1
    summary = []
    for name, cmd in runs:
        shown = " ".join(os.path.relpath(c, REPO) if c.startswith(str(REPO)) else c for c in cmd[1:])
        print(f"\n===== {name}: python {shown}", flush=True)
        if args.dry_run:
            continue
        t = time.time()
        rc = subprocess.call(cmd, cwd=REPO)
        summary.append((name, rc, time.time() - t))
    if args.dry_run:
        return 0
    print("\n===== run_all summary")
    for name, rc, secs in summary:
        print(f"  {name:14s} {'ok' if rc == 0 else f'FAILED (exit {rc})':18s} {secs:8.1f} s")
    return 1 if any(rc for _, rc, _ in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
