"""Train LightGCN locally: runs the trainer (musicmap.train.main) under torchrun with N processes
(gloo on CPU, nccl on GPUs), or as one plain process for --nproc 1. Modules run with -m, so a
job's own folder never lands on sys.path.

    musicmap train --root demo-data --nproc 2 [--set train.epochs=10] [--max-restarts 1]
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback

from musicmap import storage
from musicmap.config import config_from_args
from musicmap.errors import MusicMapError, exit_status

MAIN = "musicmap.train.main"


_KEEP_ALIVE: list = []


def exit_without_teardown(rc: int) -> None:
    """Leave a torchrun worker once its work is done and flushed, skipping interpreter teardown:
    destroying gloo's process group there (or when the DDP wrapper that holds it is freed) can
    deadlock, its worker thread waiting for the GIL that the main thread holds while joining it,
    and torchrun would wait forever. Objects put in _KEEP_ALIVE are never freed before that."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def run_worker(main, prog: str) -> None:
    """The `__main__` of a torchrun entry script. It runs main() and leaves through
    exit_without_teardown with main's status, 2 after a MusicMapError (reported in one line) or
    1 after any other error (its traceback printed)."""
    try:
        rc = exit_status(main, prog)
    except Exception:  # noqa: BLE001 - print it, then leave without teardown (see above)
        traceback.print_exc()
        rc = 1
    exit_without_teardown(rc)


# torchrun's agent keeps one store for all restarts of a job: the keys a restarted attempt's ranks
# meet by are then the killed attempt's, and gloo connects to dead ranks' ports (refused, or a hang).
# With this set, rank 0 of each attempt hosts a fresh store instead (musicmap.distributed.init).
FRESH_STORE_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def add_arguments(p) -> None:
    p.add_argument("--nproc", type=int, default=1, help="processes (one per GPU, or CPU processes)")
    p.add_argument("--max-restarts", type=int, default=0,
                   help="torchrun restarts after a failed process (each resumes from the checkpoint)")


def torchrun_command(module: str, args, nproc: int, max_restarts: int = 0, extra: list[str] = ()) -> list[str]:
    """The command line running `module` (python -m) with the parsed --config/--root/--set
    options, under torchrun when nproc > 1 (standalone rendezvous on this machine)."""
    fwd = []
    if args.config:
        fwd += ["--config", args.config]
    if args.root:
        fwd += ["--root", args.root]
    for o in [*args.overrides, *extra]:
        fwd += ["--set", o]
    if nproc <= 1:
        return [sys.executable, "-m", module, *fwd]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            f"--max-restarts={max_restarts}", "-m", module, *fwd]


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
