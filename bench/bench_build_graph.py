"""Benchmark of build_graph: MB/s of JSON and playlists/s end to end (the `musicmap build-graph`
command, local Spark on this machine, JVM start included), peak memory, how time grows from 10 to
100 slices, and the ratio against a single-process plain-Python build doing the same work on the
same files (bench/reference_graph.py), measured in the same run.

    python bench/bench_build_graph.py [--slices 10,50,100] [--mpd DIR] [--quick]

--mpd: a folder of generated slices (default bench/out/mpd100, generated with `musicmap synth`
when missing). Each size runs on a folder of links to the first N slices.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
PY = sys.executable
sys.path.insert(0, str(ROOT / "bench"))

from common import ProcessTreeMemory


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak tree RSS bytes, output) of a command."""
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    with ProcessTreeMemory(p.pid) as mem:
        out, _ = p.communicate()
    secs = time.time() - t0
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return secs, mem.total_peak, out


def subset(src: Path, n: int) -> Path:
    from musicmap import mpd
    files = sorted(src.glob("mpd.slice.*.json"), key=lambda f: mpd.slice_sort_key(f.name))[:n]
    if len(files) < n:
        raise SystemExit(f"{src} has {len(files)} slices, fewer than {n}")
    root = OUT / f"build_graph_{n}"
    (root / "mpd").mkdir(parents=True, exist_ok=True)
    for f in (root / "mpd").glob("*"):
        f.unlink()
    for f in files:
        (root / "mpd" / f.name).symlink_to(f.resolve())
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", default="10,50,100")
    ap.add_argument("--mpd", type=Path, default=OUT / "mpd100")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--quick", action="store_true", help="3 slices only (a smoke run)")
    args = ap.parse_args(argv)
    sizes = [3] if args.quick else [int(x) for x in args.slices.split(",")]
    if len(list(args.mpd.glob("mpd.slice.*.json"))) < max(sizes):
        print(f"generating {max(sizes)} slices in {args.mpd} ...", flush=True)
        subprocess.run([PY, "-m", "musicmap.cli", "-q", "synth", "--playlists", str(1000 * max(sizes)),
                        "--out", str(args.mpd), "--seed", "1"], check=True, cwd=ROOT)
    env = {"PYSPARK_PYTHON": PY, "PYSPARK_DRIVER_PYTHON": PY, "SPARK_LOCAL_IP": "127.0.0.1"}
    rows = []
    for n in sizes:
        root = subset(args.mpd, n)
        mb = sum(f.stat().st_size for f in (root / "mpd").glob("*.json")) / 1e6
        secs, rss, out = timed([PY, "-m", "musicmap.cli", "build-graph", "--root", str(root)], env)
        stats = json.loads(next((root / "graph").glob("v-*/stats.json")).read_text())
        playlists = stats["reconciliation"]["playlists"]["read"]
        row = {"slices": n, "mb": round(mb, 1), "playlists": playlists, "seconds": round(secs, 1),
               "mb_per_s": round(mb / secs, 1), "playlists_per_s": round(playlists / secs),
               "peak_rss_gb": round(rss / 1e9, 2), "job_seconds": stats["seconds"]}
        if not args.skip_reference:
            rsecs, rrss, _ = timed([PY, str(ROOT / "bench" / "reference_graph.py"), str(root / "mpd"),
                                    str(root / "reference")])
            row.update({"reference_seconds": round(rsecs, 1), "reference_mb_per_s": round(mb / rsecs, 1),
                        "reference_peak_rss_gb": round(rrss / 1e9, 2), "speedup": round(rsecs / secs, 2)})
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'slices':>6} {'MB':>8} {'seconds':>8} {'MB/s':>7} {'playlists/s':>12} {'peak GB':>8}"
          + ("" if args.skip_reference else f" {'ref s':>7} {'ref MB/s':>9} {'ref GB':>7} {'ours/ref':>9}"))
    for r in rows:
        print(f"{r['slices']:>6} {r['mb']:>8,.0f} {r['seconds']:>8.1f} {r['mb_per_s']:>7.1f} "
              f"{r['playlists_per_s']:>12,} {r['peak_rss_gb']:>8.2f}" + ("" if args.skip_reference else
              f" {r['reference_seconds']:>7.1f} {r['reference_mb_per_s']:>9.1f} "
              f"{r['reference_peak_rss_gb']:>7.2f} {r['speedup']:>8.2f}x"))
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"time grows {b['seconds'] / a['seconds']:.2f}x for {b['slices'] / a['slices']:.0f}x the "
              f"slices (linear = {b['slices'] / a['slices']:.0f}x); JSON rate {a['mb_per_s']} -> {b['mb_per_s']} MB/s")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "build_graph.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
