"""The process group of torchrun workers, every collective the project runs, and how a job runs
under torchrun (torchrun_command, run_worker), in one place.

    init("cuda", timeout_s=1800)       # join torchrun's group (cpu:gloo,cuda:nccl on GPUs)
    sums = sum_over_ranks([loss, n])   # float64 sums; every rank gets them
    epoch = broadcast(epoch)           # rank 0's object on every rank
    digests = gather(digest)           # [rank 0's, rank 1's, ...] on every rank
    barrier()

Why one module: NCCL takes CUDA tensors only, and a CPU tensor handed to an NCCL-only group fails
the run (a trainer once all-reduced its CPU loss totals there). So on a GPU the group gets one
backend per device type, `cpu:gloo,cuda:nccl`: DDP's CUDA gradients go over NCCL, the small CPU
tensors below (and pickled objects) over gloo. sum_over_ranks puts its tensor on a device the
group takes (device_for), or says in one line that there is none. No other module calls
torch.distributed's collectives (tests/test_collectives.py reads the source to hold that).

The collectives of the project, and their tensors' devices:
  - DDP (train/main.py): parameters broadcast at wrap, gradients all-reduced each step, on the
    model's device (CUDA: NCCL; CPU: gloo);
  - sum_over_ranks: the epoch's loss totals (train/main.py) and the validation sums
    (musicmap/train/validate.py: every epoch, and each fold-in mode at the end), CPU float64: gloo;
  - broadcast: the checkpoint epoch rank 0 resumes from (musicmap/train/checkpoint.py), the recs version
    of a sharded recommend (musicmap/recommend/main.py); pickled on the CPU: gloo;
  - gather: the parameter digests of the ranks (train/main.py), the recommend summaries; gloo;
  - barrier: after each checkpoint and the export (train), before a sharded recommend exits; gloo.
"""
from __future__ import annotations

import datetime
import logging
import os
import sys
import traceback

import torch
import torch.distributed as dist

from musicmap.errors import MusicMapError, exit_status
from musicmap.log import get_logger

# The backend of each accelerator's tensors; CPU tensors always go over gloo.
ACCELERATOR_BACKEND = {"cuda": "nccl"}
# The device types each backend takes tensors of.
TAKES = {"gloo": {"cpu", "cuda"}, "nccl": {"cuda"}, "mpi": {"cpu", "cuda"}, "ucc": {"cpu", "cuda"}}


class CollectiveError(MusicMapError):
    """A tensor on a device that no backend of the process group takes."""


def backend_spec(device_type: str, choice: str = "auto") -> str:
    """The backend spec of init_process_group for a run on `device_type`: `choice` when it is not
    auto (train.dist_backend, e.g. "gloo"), else gloo on CPU and cpu:gloo,<device>:<its backend>
    on an accelerator."""
    if choice != "auto":
        return choice
    if device_type == "cpu":
        return "gloo"
    return f"cpu:gloo,{device_type}:{ACCELERATOR_BACKEND[device_type]}"


def parse_spec(spec: str) -> dict[str, str]:
    """{device type: backend} of a backend spec ("gloo", "nccl", "cpu:gloo,cuda:nccl")."""
    if ":" not in spec:
        return {d: spec for d in TAKES.get(spec, ("cpu", "cuda"))}
    return dict(part.strip().split(":", 1) for part in spec.split(","))


def backends() -> dict[str, str]:
    """{device type: backend} of the default process group."""
    return parse_spec(str(dist.get_backend()))


def device_for(kind: str, op: str) -> torch.device:
    """A device for a collective's tensor made on `kind`: `kind` itself when a backend of the group
    takes it (on a GPU run, CPU tensors go to gloo), else the group's accelerator (a group
    created as plain "nccl" takes CUDA tensors only); fails in one line when there is none."""
    groups = backends()
    if kind in TAKES.get(groups.get(kind, ""), ()):
        return torch.device(kind)
    for other, backend in groups.items():
        module = getattr(torch, other, None)
        if other != "cpu" and other in TAKES.get(backend, ()) and module and module.is_available():
            return torch.device(other, module.current_device())
    raise CollectiveError(
        f"{op}: no backend of the process group '{dist.get_backend()}' takes {kind} tensors and "
        f"there is no device it takes here; create the group with backend_spec() "
        f"(cpu:gloo,cuda:nccl on GPUs, gloo on CPUs)")


def init(device_type: str, timeout_s: float, choice: str = "auto") -> str:
    """dist.init_process_group for a torchrun worker, safe under --max-restarts; returns the spec.

    Where torchrun shares its agent's store across restarts (FRESH_STORE_ENV unset),
    the ranks of one node meet under a prefix of their attempt number; several nodes cannot
    (their restart counts may differ), so there the launcher must set FRESH_STORE_ENV
    (infra/docker/Dockerfile does)."""
    spec = backend_spec(device_type, choice)
    timeout = datetime.timedelta(seconds=timeout_s)
    env = os.environ
    shared = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and int(env.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0
    if shared and int(env.get("GROUP_WORLD_SIZE", "1")) == 1:
        world = int(env["WORLD_SIZE"])
        store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world, is_master=False, timeout=timeout)
        store = dist.PrefixStore(f"musicmap/attempt-{env['TORCHELASTIC_RESTART_COUNT']}", store)
        dist.init_process_group(spec, store=store, rank=int(env["RANK"]), world_size=world, timeout=timeout)
        return spec
    if shared:
        get_logger("train").warning(
            "torchrun --max-restarts across nodes needs TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its "
            "environment; without it a restarted attempt may fail to connect")
    dist.init_process_group(spec, timeout=timeout)
    return spec


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_over_ranks(values) -> list[float]:
    """The sums over all ranks of a few numbers, exact in float64. The tensor is made on the CPU
    and goes where the group takes it (gloo in every group backend_spec makes)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if active():
        on = t.to(device_for("cpu", "sum_over_ranks"))
        dist.all_reduce(on)
        t = on.cpu()
    return t.tolist()


def broadcast(obj, src: int = 0):
    """Rank src's obj, on every rank (pickled; torch puts it on the CPU when the group has gloo,
    else on the current GPU)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(obj) -> list:
    """Every rank's obj, in rank order, on every rank (pickled, as broadcast)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


# ------------------------------------------------------------------ torchrun workers

KEEP_ALIVE: list = []


def exit_without_teardown(rc: int) -> None:
    """Leave a torchrun worker once its work is done and flushed, skipping interpreter teardown:
    destroying gloo's process group there (or when the DDP wrapper that holds it is freed) can
    deadlock, its worker thread waiting for the GIL that the main thread holds while joining it,
    and torchrun would wait forever. Objects put in KEEP_ALIVE are never freed before that."""
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
