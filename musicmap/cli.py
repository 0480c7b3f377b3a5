"""The `musicmap` command line: one sub-command per stage, all sharing --config, --root, --set.

    musicmap synth --playlists 20000 --out demo-data/mpd [--random-seed 0] [--challenge]
    musicmap check demo-data/mpd
    musicmap build-graph --root demo-data          (local Spark; spark-submit spark_jobs/build_graph.py on a cluster)
    musicmap train --root demo-data --nproc 2      (torchrun train/main.py)
    musicmap fit-ranker --root demo-data           (the re-ranker, fitted on validation playlists)
    musicmap recommend --root demo-data [--k 500] [--playlists test] [--challenge FILE]
    musicmap evaluate --root demo-data
    musicmap similar --root demo-data --track "NAME" [--artist "NAME"]
    musicmap map --root demo-data                  (the music map: open map/<version>/index.html)
    musicmap tune --root demo-data [--trials 12]   (search on validation; writes best.yaml)

Errors a user can act on (bad config, missing input, storage problems) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from musicmap.config import add_config_args
from musicmap.errors import exit_status
from musicmap.log import setup_logging

COMMANDS = {  # name -> (module, one-line help); a module is imported only when its command runs
    "synth": ("musicmap.synth", "generate a synthetic MPD (and challenge set) in the exact format"),
    "check": ("musicmap.check", "validate MPD slices and print the official statistics"),
    "build-graph": ("musicmap.spark_jobs.build_graph", "MPD slices -> filtered, time-split Parquet graph (Spark)"),
    "train": ("musicmap.train.launch", "train LightGCN with BPR under torchrun (N processes)"),
    "fit-ranker": ("musicmap.recommend.fit_ranker", "fit the re-ranker on validation playlists (the second stage)"),
    "recommend": ("musicmap.recommend.main", "top-K tracks per playlist, challenge submission"),
    "evaluate": ("musicmap.tools.evaluate", "challenge metrics of the model beside baselines"),
    "similar": ("musicmap.recommend.similar", "tracks closest to one or more seed tracks"),
    "map": ("musicmap.tools.map", "the music map: a web page of the track embedding space"),
    "tune": ("musicmap.tools.tune", "search the knobs that matter on validation; write the best config"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="musicmap", description=__doc__.split("\n\n")[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_) in COMMANDS.items():
        if name not in argv:
            sub.add_parser(name, help=help_)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_config_args(p)
        module.add_arguments(p)
        p.set_defaults(run=module.run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    setup_logging(quiet=args.quiet)
    try:
        return exit_status(lambda: args.run(args), f"musicmap {args.command}")
    except KeyboardInterrupt:
        print(f"musicmap {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
