"""Benchmark of build_graph: MB/s of JSON and playlists/s end to end (the `musicmap build-graph`
command, local Spark on this machine, JVM start included), peak memory, how time grows from 10 to
100 slices, and the ratio against a single-process plain-Python build doing the same work on the
same files (tests/reference_graph.py, the tests' oracle), measured in the same run.

    python -m bench.bench_build_graph [--slices 10,50,100] [--mpd DIR] [--quick]
    python -m bench.bench_build_graph --dense-ids [--tracks 2262292 --playlists 1000000]

--mpd: a folder of generated slices (default bench/out/mpd100, generated with `musicmap synth`
when missing). Each size runs on a folder of links to the first N slices.

--dense-ids: the job's two id assignments alone at the full MPD's size (2,262,292 distinct tracks,
the catalogue before the track filter, and 1,000,000 playlists), in one local Spark session:
graph.dense_ids against the row_number over an unpartitioned window that it replaced, on the same
tables, each timed over 3 rounds (best kept), with a check that both give every row the same id.
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

from pyspark.sql import Window
from pyspark.sql import functions as F

from bench.common import ProcessTreeMemory
from musicmap import mpd
from musicmap.config import load_config
from musicmap.spark_jobs.build_graph import spark_session
from musicmap.spark_jobs.graph import Cache, dense_ids


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


def dense_ids_bench(n_tracks: int, n_playlists: int, rounds: int = 3) -> dict:
    """Seconds of graph.dense_ids and of Window.orderBy + row_number on MPD-sized tables."""
    spark = spark_session(load_config(), local=True)  # the job's own session and settings
    h = F.xxhash64
    tables = {  # what the job numbers: tracks by (count desc, uri), playlists by (split, time, pid)
        "track_idx": (spark.range(n_tracks).select(
            F.concat(F.lit("spotify:track:"), F.sha2(F.col("id").cast("string"), 256).substr(1, 22)).alias("track_uri"),
            (F.abs(h("id")) % 1000 + 1).alias("train_playlists")),
            [F.desc("train_playlists"), F.asc("track_uri")]),
        "playlist_idx": (spark.range(n_playlists).select(
            F.col("id").alias("pid"), (F.abs(h("id")) % 3).alias("split_order"),
            (F.abs(h(F.col("id") + 7)) % 200_000_000 + 1_300_000_000).alias("modified_at")),
            ["split_order", "modified_at", "pid"]),
    }
    out = {}
    for name, (df, order) in tables.items():
        df = df.persist()
        df.count()
        rows = df.count()
        number = {"dense_ids": lambda c: dense_ids(df, name, order, c.keep),
                  "window": lambda c: df.withColumn(name, (F.row_number().over(Window.orderBy(*order)) - 1).cast("int"))}
        times = {m: [] for m in number}
        for _ in range(rounds):
            caches, frames = {}, {}
            for m, fn in number.items():
                caches[m] = Cache()
                t0 = time.time()
                frames[m] = caches[m].keep(fn(caches[m]))
                frames[m].count()
                times[m].append(time.time() - t0)
            a, b = frames["dense_ids"], frames["window"].withColumnRenamed(name, "other")
            differ = a.join(b, df.columns).where(F.col(name) != F.col("other")).count()
            assert differ == 0 and a.count() == rows and a.agg(F.max(name)).first()[0] == rows - 1, \
                f"{name}: {differ} rows numbered differently"
            for c in caches.values():
                c.release()
        out[name] = {"rows": rows, "dense_ids_s": round(min(times["dense_ids"]), 2),
                     "window_s": round(min(times["window"]), 2),
                     "ratio": round(min(times["dense_ids"]) / min(times["window"]), 2),
                     "cores": spark.sparkContext.defaultParallelism,
                     "ranges": int(spark.conf.get("spark.sql.shuffle.partitions"))}
        df.unpersist()
        print(json.dumps({name: out[name]}), flush=True)
    spark.stop()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", default="10,50,100")
    ap.add_argument("--mpd", type=Path, default=OUT / "mpd100")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--quick", action="store_true", help="3 slices only (a smoke run)")
    ap.add_argument("--dense-ids", action="store_true", help="the id assignments alone, at the MPD's size")
    ap.add_argument("--tracks", type=int, default=2_262_292)
    ap.add_argument("--playlists", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    if args.dense_ids:
        res = dense_ids_bench(args.tracks, args.playlists)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "build_graph_dense_ids.json").write_text(json.dumps(res, indent=2))
        for name, r in res.items():
            print(f"{name}: {r['rows']:,} rows, dense_ids {r['dense_ids_s']} s, window {r['window_s']} s, "
                  f"ratio {r['ratio']}x (dense_ids / window, best of 3, {r['cores']} cores, {r['ranges']} ranges)")
        return 0
    sizes = [3] if args.quick else [int(x) for x in args.slices.split(",")]
    if len(list(args.mpd.glob("mpd.slice.*.json"))) < max(sizes):
        print(f"generating {max(sizes)} slices in {args.mpd} ...", flush=True)
        subprocess.run([PY, "-m", "musicmap.cli", "-q", "synth", "--playlists", str(1000 * max(sizes)),
                        "--out", str(args.mpd), "--random-seed", "1"], check=True, cwd=ROOT)
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
            rsecs, rrss, _ = timed([PY, str(ROOT / "tests" / "reference_graph.py"), str(root / "mpd"),
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
