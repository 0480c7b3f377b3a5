"""Train LightGCN locally: runs the trainer (musicmap.train.main) under torchrun with N processes
(gloo on CPU, nccl on GPUs), or as one plain process for --nproc 1. Modules run with -m, so a
job's own folder never lands on sys.path.

    musicmap train --root demo-data --nproc 2 [--set train.epochs=10] [--max-restarts 1]
"""
from __future__ import annotations

import os
import subprocess

from musicmap import storage
from musicmap.config import config_from_args
from musicmap.distributed import FRESH_STORE_ENV, torchrun_command
from musicmap.errors import MusicMapError

MAIN = "musicmap.train.main"


def add_arguments(p) -> None:
    p.add_argument("--nproc", type=int, default=1, help="processes (one per GPU, or CPU processes)")
    p.add_argument("--max-restarts", type=int, default=0,
                   help="torchrun restarts after a failed process (each resumes from the checkpoint)")


def run_cli(args) -> int:
    cfg = config_from_args(args)  # a bad key or a missing graph fails before any process starts
    storage.open_committed(storage.stage_uri(cfg, "graph"), "build-graph")
    env = dict(os.environ, **FRESH_STORE_ENV)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.nproc))))
    rc = subprocess.call(torchrun_command(MAIN, args, args.nproc, args.max_restarts), env=env)
    if rc == 2:
        return 2  # an error the trainer already reported in one line
    if rc != 0:
        raise MusicMapError(f"training failed (exit status {rc}); see the log above")
    return 0
