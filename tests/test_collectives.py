"""Collectives that every backend takes, and ranks that resume from one checkpoint.

No GPU here, so the GPU's rule is played by real PyTorch: a process group created as
"cuda:gloo" has a backend for CUDA tensors only, as an NCCL-only group has, and PyTorch refuses a
CPU tensor there exactly as NCCL does. The group the trainer makes on a GPU is
"cpu:gloo,cuda:nccl"; here "cpu:gloo,cuda:gloo" stands for it (gloo for NCCL).
"""
from __future__ import annotations

import ast
import os

import pytest
from conftest import ROOT, run_cmd, torchrun_train

from musicmap import distributed
from musicmap.train.export import load_model

HOOKS = ROOT / "tests" / "hooks"
COLLECTIVES = {"all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list",
               "barrier", "reduce", "reduce_scatter", "all_to_all", "gather", "scatter", "send", "recv",
               "gather_object", "scatter_object_list", "all_gather_into_tensor", "monitored_barrier"}


def test_no_module_calls_a_collective_but_musicmap_distributed():
    """Every collective goes through musicmap.distributed (which puts its tensor where the group
    takes it): a direct dist.all_reduce of a CPU tensor on a GPU run is what failed."""
    direct = []
    for folder in ("musicmap", "train", "spark_jobs", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "musicmap" / "distributed.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in COLLECTIVES
                        and ast.unparse(node.func.value) in ("dist", "torch.distributed")):
                    direct.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.func)}")
    assert not direct, direct


def test_the_spec_a_gpu_run_gets_has_a_backend_for_cpu_tensors():
    assert distributed.backend_spec("cpu") == "gloo"
    assert distributed.backend_spec("cuda") == "cpu:gloo,cuda:nccl"
    assert distributed.backend_spec("cuda", "gloo") == "gloo"       # train.dist_backend
    assert distributed.parse_spec("cpu:gloo,cuda:nccl") == {"cpu": "gloo", "cuda": "nccl"}
    assert distributed.parse_spec("nccl") == {"cuda": "nccl"}


WORKER = r'''
import sys, torch, torch.distributed as dist
from musicmap import distributed
say = lambda *a: sys.stdout.write(" ".join(map(str, a)) + "\n") and sys.stdout.flush()
spec = sys.argv[1]
dist.init_process_group(spec)
rank = dist.get_rank()
try:
    say("sum", distributed.sum_over_ranks([rank + 0.5, 1]))
except distributed.CollectiveError as e:
    say("refused", e)
if "cpu:" in spec:     # objects go to the CPU where the group has gloo, else to the current GPU
    say("broadcast", distributed.broadcast({"epoch": 7} if rank == 0 else None))
    say("gather", distributed.gather(f"r{rank}"))
    distributed.barrier()
try:                   # what the trainer did before: a CPU tensor, straight in
    dist.all_reduce(torch.ones(2, dtype=torch.float64))
    say("direct ok")
except RuntimeError as e:
    say("direct failed", e)
# leave as the trainer does: both ranks done, then no interpreter teardown (tearing gloo down at
# exit aborted a rank once: "terminate called without an active exception")
if "cpu:" in spec:
    distributed.barrier()
from musicmap.distributed import exit_without_teardown
exit_without_teardown(0)
'''


@pytest.mark.parametrize("spec", ["cpu:gloo,cuda:gloo", "cuda:gloo"])
def test_collectives_under_a_group_like_a_gpu_runs(spec, tmp_path):
    """Under the mixed group a GPU run makes, every helper works on CPU tensors and objects; under
    a group with an accelerator backend only (as plain nccl), PyTorch itself refuses a CPU tensor,
    and sum_over_ranks says why in one line (a GPU would take it; this machine has none)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    p = run_cmd(["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                 str(script), spec], timeout=180)
    out = p.stdout
    if spec == "cpu:gloo,cuda:gloo":
        assert out.count("sum [2.0, 2.0]") == 2 and out.count("direct ok") == 2
        assert out.count("broadcast {'epoch': 7}") == 2 and out.count("gather ['r0', 'r1']") == 2
    else:
        assert out.count("refused sum_over_ranks: no backend of the process group 'cuda:gloo' takes cpu") == 2
        assert out.count("direct failed No backend type associated with device type cpu") == 2


@pytest.mark.slow
def test_the_trainer_runs_under_the_mixed_group_and_ranks_resume_one_checkpoint(graph_small, tmp_path):
    root, _ = graph_small
    model_dir = tmp_path / "model"
    mixed = "train.dist_backend=cpu:gloo,cuda:gloo"
    torchrun_train(root, mixed, "train.epochs=2", "train.keep_checkpoints=5", model_dir=model_dir)
    m = load_model(str(model_dir))
    assert m.manifest["epochs_run"] == 2 and len(set(m.manifest["rank_param_digests"])) == 1

    # rank 1 sees a damaged epoch-0002.pt, rank 0 an intact one: rank 0 resumes from epoch 2, and
    # rank 1 must not silently resume from epoch 1 (it would train apart): it fails, naming it
    env = {"PYTHONPATH": os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "MUSICMAP_DAMAGE_READ": "*epoch-0002.pt", "MUSICMAP_DAMAGE_RANK": "1"}
    p = torchrun_train(root, mixed, "train.epochs=3", "train.dist_timeout_s=60", model_dir=model_dir,
                       env=env, check=False, timeout=300)
    assert p.returncode != 0
    assert "epoch-0002.pt: rank 0 resumes from this checkpoint, but this rank cannot read it" in p.stderr
    assert load_model(str(model_dir)).version == m.version          # nothing committed

    # rank 0 sees it damaged: it chooses epoch 1, and rank 1 loads exactly that one (it could read 2)
    env["MUSICMAP_DAMAGE_RANK"] = "0"
    p = torchrun_train(root, mixed, "train.epochs=3", model_dir=model_dir, env=env, timeout=300)
    assert "resumed from checkpoint epoch 1" in p.stderr
    resumed = load_model(str(model_dir))
    assert resumed.manifest["epochs_run"] == 3 and len(set(resumed.manifest["rank_param_digests"])) == 1


def test_a_deterministic_run_fixes_cublas_workspace(monkeypatch):
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA starts: train.deterministic sets it first."""
    import torch

    from musicmap.config import load_config
    from musicmap.train.main import start
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        for deterministic, want in ((False, None), (True, ":4096:8")):
            monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
            run = start(load_config(overrides=[f"train.deterministic={str(deterministic).lower()}",
                                               "train.device=cpu"]).train)
            assert run.world == 1 and os.environ.get("CUBLAS_WORKSPACE_CONFIG") == want
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
