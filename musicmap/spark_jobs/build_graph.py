"""Build the graph: MPD slices -> filtered, time-split Parquet edge lists, dictionaries, eval cases.

On a cluster:  spark-submit [--py-files dist/musicmap-dist.zip] spark_jobs/build_graph.py \\
                   --root s3://bucket/mm [--input URI] [--output URI] [--config FILE] [--set k=v]
Locally:       musicmap build-graph --root demo-data     (local Spark, the project's Python)

Reads <root>/mpd (or --input), writes <root>/graph (or --output), committed atomically.
The steps and the stats are described in musicmap/spark_jobs/graph.py.
"""
from __future__ import annotations

import argparse
import os
import sys

from pyspark.sql import SparkSession

from musicmap import storage
from musicmap.config import add_config_args, config_from_args
from musicmap.errors import exit_status
from musicmap.log import setup_logging
from musicmap.spark_jobs.graph import build


def add_arguments(p) -> None:
    p.add_argument("--input", metavar="URI", help="MPD slices folder (default paths.mpd = <root>/mpd)")
    p.add_argument("--output", metavar="URI", help="graph output folder (default <root>/graph)")
    p.add_argument("--strict", action="store_true", help="fail on any quarantined input")


def spark_session(cfg, local: bool):
    """The job's Spark session: spark-submit's master on a cluster, graph.spark_master locally."""
    b = SparkSession.builder.appName("musicmap-build-graph")
    if local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        b = (b.master(cfg.graph.spark_master).config("spark.driver.memory", cfg.graph.spark_driver_memory)
             .config("spark.ui.enabled", "false"))
    b = (b.config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.sql.autoBroadcastJoinThreshold", str(64 << 20))
         # The job's later plans nest its cached frames, and their full text (3 MB for the edges)
         # is kept for every query the driver runs: enough to fill a 2 GB heap in a long session.
         .config("spark.sql.maxPlanStringLength", str(64 << 10)))
    spark = b.getOrCreate()
    parts = cfg.graph.shuffle_partitions or 2 * spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.shuffle.partitions", str(parts))
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def summary(stats: dict) -> str:
    g, rec = stats["graph"], stats["reconciliation"]
    p, o = rec["playlists"], rec["occurrences"]
    lines = [
        "--- Graph Statistics ---",
        f"  Total Nodes: {g['nodes']:,}",
        f"    - Playlists: {g['playlists']:,}",
        f"    - Tracks: {g['tracks']:,}",
        f"  Total Edges (bidirectional): {g['directed_entries']:,}",
        f"  Actual Interactions (unidirectional): {g['interactions']:,}",
        f"  Bipartite Sparsity: {g['sparsity']:.8f}",
        f"  Playlist degree: mean {g['playlist_degree']['mean']:.2f}, std {g['playlist_degree']['std']:.2f}, "
        f"min {g['playlist_degree']['min']}, max {g['playlist_degree']['max']}",
        f"  Track degree:    mean {g['track_degree']['mean']:.2f}, std {g['track_degree']['std']:.2f}, "
        f"min {g['track_degree']['min']}, max {g['track_degree']['max']}",
        "--- Reconciliation ---",
        f"  files read {rec['files']['read']}, unreadable {rec['files']['unreadable']['files']}",
        f"  playlists read {p['read']:,} = valid {p['valid']:,} + quarantined {p['quarantined']:,} "
        f"{p['quarantined_by_rule'] or ''}",
        f"  valid = {' + '.join(f'{k} {v:,}' for k, v in sorted(p['by_split'].items()))}; "
        f"train in graph {p['train_in_graph']:,}, removed (< min_tracks) {p['train_removed_min_tracks']:,}",
        f"  occurrences read {o['read']:,} = valid {o['valid']:,} + quarantined {o['quarantined']:,}",
        f"  train occurrences {o['train']['total']:,} = edges {o['train']['edges']:,} + repeats "
        f"{o['train']['repeats_within_playlist']:,} + held out {o['train']['held_out_for_evaluation']:,}"
        f" + track filter {o['train']['removed_track_filter']:,}"
        f" + removed playlists {o['train']['removed_with_playlist_min_tracks']:,}",
        f"  eval cases: {sum(n for k, n in g['eval_cases'].items() if not k.startswith('graph_')):,} over "
        f"{g['eval_playlists']:,} val/test playlists; "
        f"{sum(n for k, n in g['eval_cases'].items() if k.startswith('graph_')):,} graph playlists with held-out tracks",
        f"  checks: {'all reconcile' if all(rec['checks'].values()) else rec['checks']}",
        f"  {stats['seconds']}s",
    ]
    return "\n".join(lines)


def run(cfg, input_uri: str | None = None, output_uri: str | None = None, local: bool = True) -> dict:
    storage.configure(cfg.storage)
    spark = spark_session(cfg, local)
    return build(spark, cfg, input_uri or storage.stage_uri(cfg, "mpd"),
                 output_uri or storage.stage_uri(cfg, "graph"))


def run_cli(args) -> int:
    cfg = config_from_args(args, ["graph.strict=true"] if args.strict else [])
    stats = run(cfg, args.input, args.output, local=True)
    print(summary(stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry: same options as `musicmap build-graph`, the master from spark-submit."""
    parser = argparse.ArgumentParser(prog="build_graph.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()

    def job() -> int:
        cfg = config_from_args(args, ["graph.strict=true"] if args.strict else [])
        print(summary(run(cfg, args.input, args.output, local=False)))
        return 0
    return exit_status(job, "build_graph")


if __name__ == "__main__":
    sys.exit(main())
