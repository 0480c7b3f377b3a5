"""Synthetic MPD generation and validation throughput (issue 2): `musicmap synth` and
`musicmap check` in playlists per second and MB/s, and whether 100,000 playlists synthesise in
under 2 minutes on one core.

    python -m bench.bench_synth_check                 # 20,000 playlists synth + check, 100,000 synth
    python -m bench.bench_synth_check --quick         # 2,000 playlists, no 100K run
    python -m bench.bench_synth_check --playlists 20000 --big 100000 --keep DIR

What is measured
  synth   musicmap.synth.generate(out, N, seed=0) (what `musicmap synth --playlists N` runs, with the
          config's defaults: 24 communities, focus 0.6, exponent 0.9, catalogue 2.3 tracks per
          playlist) writing to a fresh temporary folder on local disk.
  check   musicmap.check.check(out) (what `musicmap check` runs) over those slices; it must find
          no violation and N valid playlists.
  big     generate() of --big playlists, alone.
  Each measurement runs in its own child process with OMP/MKL/OpenBLAS threads = 1 and, unless
  --no-pin, pinned to one CPU (os.sched_setaffinity); wall seconds (time.perf_counter around the
  call) and CPU seconds (time.process_time: on a shared, busy machine this is the time the core
  was actually ours) are both reported; MB/s = bytes written (synth) or read (check) / seconds.
  Outputs are written under a temporary folder and deleted (unless --keep).

Results print as a table and go to --out (JSON, default bench/out/bench_synth_check.json).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from musicmap.check import check
from musicmap.synth import generate

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}


def _child(argv: list[str]) -> int:
    """`_synth OUT N` or `_check OUT`: one measurement, a JSON line on stdout."""
    logging.disable(logging.INFO)
    what, out = argv[0], argv[1]
    if what == "_synth":
        n = int(argv[2])
        w0, c0 = time.perf_counter(), time.process_time()
        info = generate(out, n, random_seed=0, show_progress=False)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        res = {"playlists": n, "bytes": info["bytes"], "slices": info["slices"],
               "catalog_tracks": info["catalog_tracks"]}
    else:
        w0, c0 = time.perf_counter(), time.process_time()
        r = check(out, show_progress=False)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        res = {"playlists": r.valid_playlists, "read": r.playlists, "bytes": r.bytes, "files": r.files,
               "violations": len(r.violations), "occurrences": r.occurrences,
               "unique_tracks": len(r.tracks)}
    res.update({"wall_s": wall, "cpu_s": cpu, "affinity": sorted(os.sched_getaffinity(0)),
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    print("RESULT " + json.dumps(res))
    return 0


def measure(what: str, out: str, n: int | None, pin: bool) -> dict:
    env = {**os.environ, **ONE_THREAD}
    cmd = [sys.executable, "-m", "bench.bench_synth_check", what, out] + ([str(n)] if n is not None else [])
    cpu = None
    if pin:
        cpus = sorted(os.sched_getaffinity(0))
        cpu = cpus[-1]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                          preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if pin else None)
    if proc.returncode:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    for clock in ("wall", "cpu"):
        s = res[f"{clock}_s"]
        res[f"playlists_per_s_{clock}"] = res["playlists"] / s
        res[f"mb_per_s_{clock}"] = res["bytes"] / 1e6 / s
    return res


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_synth", "_check"):
        return _child(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--playlists", type=int, default=20_000, help="synth + check size")
    ap.add_argument("--big", type=int, default=100_000, help="synth-only size for the 2-minute target (0: skip)")
    ap.add_argument("--target-s", type=float, default=120.0)
    ap.add_argument("--quick", action="store_true", help="2,000 playlists, no big run")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the child processes to one CPU")
    ap.add_argument("--tmp", help="parent folder of the temporary output (default: system temp)")
    ap.add_argument("--keep", metavar="DIR", help="keep the generated slices in DIR instead of deleting them")
    ap.add_argument("--out", help="result JSON")
    args = ap.parse_args(argv)
    n = 2_000 if args.quick else args.playlists
    big = 0 if args.quick else args.big
    pin = not args.no_pin
    load0 = os.getloadavg()
    print(f"bench_synth_check: synth+check {n:,} playlists, synth {big:,}; one thread per child"
          f"{', pinned to one CPU' if pin else ''}; load avg {load0[0]:.1f}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="mm-bench-synth-", dir=args.tmp))
    results = {}
    try:
        small = str(Path(args.keep) if args.keep else tmp / "mpd")
        results["synth"] = measure("_synth", small, n, pin)
        results["check"] = measure("_check", small, None, pin)
        if results["check"]["violations"] or results["check"]["playlists"] != n:
            print(f"  CHECK FAILED: {results['check']['violations']} violations, "
                  f"{results['check']['playlists']} valid of {n}")
        if not args.keep:
            shutil.rmtree(small, ignore_errors=True)
        if big:
            results["synth_big"] = measure("_synth", str(tmp / "big"), big, pin)
            shutil.rmtree(tmp / "big", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()

    print(f"\n  {'stage':10s} {'playlists':>10s} {'MB':>8s} {'wall s':>8s} {'cpu s':>8s} "
          f"{'pl/s wall':>10s} {'pl/s cpu':>9s} {'MB/s wall':>10s} {'MB/s cpu':>9s} {'RSS MB':>7s}")
    for name, r in results.items():
        print(f"  {name:10s} {r['playlists']:10,d} {r['bytes'] / 1e6:8.1f} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
              f"{r['playlists_per_s_wall']:10,.0f} {r['playlists_per_s_cpu']:9,.0f} "
              f"{r['mb_per_s_wall']:10.1f} {r['mb_per_s_cpu']:9.1f} {r['max_rss_mb']:7.0f}")
    summary = {"check_ok": results["check"]["violations"] == 0 and results["check"]["playlists"] == n}
    if big:
        b = results["synth_big"]
        summary.update({"big_playlists": big, "big_wall_s": b["wall_s"], "big_cpu_s": b["cpu_s"],
                        "big_under_target_wall": b["wall_s"] <= args.target_s,
                        "big_under_target_cpu": b["cpu_s"] <= args.target_s})
        print(f"\n  {big:,} playlists on one core: {b['wall_s']:.1f} s wall, {b['cpu_s']:.1f} s CPU -> "
              f"target {args.target_s:.0f} s {'MET' if b['wall_s'] <= args.target_s else 'NOT MET'} (wall), "
              f"{'MET' if b['cpu_s'] <= args.target_s else 'NOT MET'} (CPU)")
    print(f"  check of the generated slices: {'no violations' if summary['check_ok'] else 'FAILED'}")
    print(f"  load average at start {load0[0]:.1f}, at end {load1[0]:.1f} (shared machine)")
    result = {"playlists": n, "big": big, "pinned": pin, "results": results, "summary": summary,
              "load_avg": [load0[0], load1[0]], "argv": argv, "python": sys.version.split()[0]}
    out = Path(args.out) if args.out else REPO / "bench" / "out" / (
        f"bench_synth_check{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"  -> {out}")
    return 0 if summary["check_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
