"""Train LightGCN with a BPR loss on the committed graph; write embeddings to <root>/model.

    torchrun --nproc_per_node=N train/main.py --root URI [--config FILE] [--set train.epochs=3]
    python train/main.py --root URI                  (one process)
    musicmap train --root URI --nproc N              (launches torchrun locally)

Each rank propagates the whole graph (LGConv over a normalised torch.sparse CSR adjacency) and
draws its BPR batches from its own share of the train edges, reshuffled every epoch from the seed;
DistributedDataParallel averages the gradients, so all ranks hold the same weights. The process
group is cpu:gloo,cuda:nccl on GPUs (DDP's gradients over NCCL, the CPU sums over gloo), gloo on
CPUs; every collective goes through musicmap.distributed. Rank 0 logs, checkpoints every epoch
(a restarted job resumes from the checkpoint rank 0 picks) and writes the output. Validation
(sharded over ranks) picks the best epoch and stops early.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from musicmap import distributed, storage
from musicmap.cases import EvalCases, load_eval
from musicmap.config import add_config_args, config_from_args
from musicmap.distributed import KEEP_ALIVE, run_worker
from musicmap.graph import Graph, embedded_only, embedded_tracks, load_graph, load_tracks
from musicmap.log import get_logger, progress, setup_logging
from musicmap.train import checkpoint
from musicmap.train.batches import epoch_batches, per_rank_batch, sample_negatives, steps_per_epoch
from musicmap.train.export import write_model
from musicmap.train.foldin import FoldIn
from musicmap.train.model import LightGCN, bpr_loss
from musicmap.train.validate import choose_foldin, validate

log = get_logger("train")


@dataclass
class Run:
    """Where this process trains: rank `rank` of `world`, on `device`, propagating in `dtype`
    (bf16 on CUDA when train.bf16, else the weights' float32)."""
    rank: int
    world: int
    local_rank: int
    device: torch.device
    dtype: torch.dtype | None

    @property
    def ddp(self) -> bool:
        return self.world > 1

    @property
    def master(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        distributed.barrier()


def torchrun_rank() -> int | None:
    """This process's rank when torchrun started several, else None."""
    several = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return int(os.environ["RANK"]) if several else None


def start(train_cfg) -> Run:
    """Join the process group torchrun set up (musicmap.distributed.backend_spec), or run alone."""
    use_cuda = train_cfg.device == "cuda" or (train_cfg.device == "auto" and torch.cuda.is_available())
    if train_cfg.deterministic:
        # cuBLAS picks reduction orders by workspace unless told a fixed one; read when CUDA
        # starts, so set before anything touches the GPU (README: what is reproducible on GPU)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    rank, local_rank, world = torchrun_rank(), 0, 1
    if rank is None:
        rank = 0
    else:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        distributed.init("cuda" if use_cuda else "cpu", train_cfg.dist_timeout_s, train_cfg.dist_backend)
        world = torch.distributed.get_world_size()
    torch.manual_seed(train_cfg.random_seed)
    if train_cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return Run(rank, world, local_rank, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"),
               torch.bfloat16 if (train_cfg.bf16 and use_cuda) else None)


@dataclass
class Data:
    """The graph LightGCN trains on (the embedded tracks of the catalogue, Graph.embedded) and
    this rank's share of the validation (seeds it has no vector for dropped)."""
    graph: Graph
    committed: storage.Committed
    adj: torch.Tensor                # (N, N) normalised sparse CSR, on the device
    track_degree: torch.Tensor       # (T,) as in the adjacency
    val_shard: EvalCases
    validating: bool
    batch: int
    steps: int


def load_data(cfg, run: Run) -> Data:
    train_cfg, use_w = cfg.train, cfg.model.use_edge_weight
    catalogue, committed = load_graph(storage.stage_uri(cfg, "graph"), cfg.storage)
    graph = catalogue.embedded(embedded_tracks(committed, cfg.model.embed_min_playlists), cfg.storage)
    P, E = graph.num_playlists, graph.num_edges
    track_degree = torch.from_numpy(graph.degrees(use_w)[P:]).float().to(run.device)
    val = load_eval(committed, "val", load_tracks(committed, ["track_idx", "track_uri"])["track_uri"].combine_chunks(),
                    max_playlists=cfg.evaluate.max_playlists, random_seed=cfg.graph.eval_random_seed)
    val.seeds = embedded_only(val.seeds, graph.num_tracks)
    with_seeds = [i for i in range(len(val)) if len(val.seeds[i])]
    if train_cfg.val_max_cases and len(with_seeds) > train_cfg.val_max_cases:
        pick = np.random.default_rng([train_cfg.random_seed, 7]).choice(len(with_seeds), train_cfg.val_max_cases, replace=False)
        with_seeds = [with_seeds[i] for i in np.sort(pick)]
    batch = per_rank_batch(E, run.world, train_cfg.batch_size, train_cfg.min_steps_per_epoch)
    data = Data(graph, committed, graph.adjacency(use_w).to(run.device), track_degree,
                val.subset(with_seeds[run.rank::run.world]), bool(train_cfg.val_every) and len(with_seeds) > 0,
                batch, steps_per_epoch(E, run.world, batch))
    log.info("graph %s: %d playlists, %d of its %d tracks embedded (in >= %d train playlists), %d of "
             "%d edges; %d validation cases; world %d on %s; %d steps per epoch of %d positives per rank",
             committed.version, P, graph.num_tracks, catalogue.num_tracks, cfg.model.embed_min_playlists, E,
             catalogue.num_edges, len(with_seeds), run.world, run.device, data.steps, batch)
    if train_cfg.val_every and not data.validating:
        log.warning("no validation cases with seeds (graph.val_fraction=0?): nothing to pick an "
                    "epoch by, so training runs all %d epochs and keeps the last", train_cfg.epochs)
    return data


class Budget:
    """train.max_minutes and train.max_steps: where a run stops though epochs are left (a CPU
    epoch at the MPD's size takes hours). Every rank stops at the same step: the time is judged
    by all ranks together (any rank over it stops all)."""

    def __init__(self, train_cfg, steps_done: int):
        self.max_s, self.max_steps = train_cfg.max_minutes * 60, train_cfg.max_steps
        self.t0, self.steps = time.time(), steps_done

    def spent(self, run: Run) -> bool:
        """Count one step; True when the budget is spent."""
        self.steps += 1
        if self.max_steps and self.steps >= self.max_steps:
            return True
        if not self.max_s:
            return False
        over = float(time.time() - self.t0 >= self.max_s)
        return (distributed.sum_over_ranks([over])[0] if run.ddp else over) > 0


def train_epoch(step_fn, opt, data: Data, run: Run, train_cfg, epoch: int, budget: Budget) -> tuple[dict, bool]:
    """One pass over this rank's share of the train edges, or as much of it as the budget
    allows: the loss and speed over all ranks, and whether the budget stopped it."""
    t0, graph = time.time(), data.graph
    gen = np.random.default_rng([train_cfg.random_seed, epoch, run.rank, 1])
    loss_sum, seen, steps, stopped = 0.0, 0, 0, False
    bar = progress(total=data.steps, desc=f"epoch {epoch}/{train_cfg.epochs}", unit="step",
                   disable=not (run.master and train_cfg.progress))
    for ids in epoch_batches(graph.num_edges, run.world, run.rank, data.batch, train_cfg.random_seed, epoch):
        if stopped:
            break
        u = graph.playlist[ids]
        neg = sample_negatives(graph, u, train_cfg.negatives, train_cfg.reject_positives, gen)
        batch = [torch.from_numpy(a).to(run.device) for a in (u, graph.track[ids], neg)]
        loss = bpr_loss(*step_fn(data.adj, *batch, run.dtype), train_cfg.l2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(ids)
        seen, steps = seen + len(ids), steps + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}",
                        edges_per_s=f"{seen * run.world / max(time.time() - t0, 1e-9):,.0f}", refresh=False)
        stopped = budget.spent(run)
    bar.close()
    loss_total, seen_total = distributed.sum_over_ranks([loss_sum, seen])
    entry = {"epoch": epoch, "loss": loss_total / max(seen_total, 1), "seconds": round(time.time() - t0, 2),
             "edges_per_s": round(seen_total / max(time.time() - t0, 1e-9)), "steps": steps}
    if stopped and steps < data.steps:
        entry["partial"] = True
    return entry, stopped


def log_epoch(entry: dict, state: checkpoint.TrainState) -> None:
    v, b = entry.get("val"), state.budget
    if b:
        why = (f" - stopped at the budget (train.max_minutes={b['max_minutes']}, train.max_steps={b['max_steps']}) "
               f"after step {b['steps']} of {b['of']}: exporting what it has")
    else:
        why = f" - no improvement for {state.bad_validations} validations, stopping" if state.stopped else ""
    log.info("epoch %d: loss %.4f, %.1fs (%s edges/s)%s%s", entry["epoch"], entry["loss"], entry["seconds"],
             f"{entry['edges_per_s']:,}",
             f", val NDCG {v['ndcg']:.4f} R-prec {v['r_precision']:.4f} clicks {v['clicks']:.2f}" if v else "", why)


def keep_best(model: LightGCN, state: checkpoint.TrainState) -> None:
    """Load the best validated epoch's weights (what is exported); without validation the last
    epoch's are kept, and state.best says so."""
    if state.best_weights is not None:
        model.load_table(state.best_weights)
    else:
        state.best = {"epoch": state.history[-1]["epoch"] if state.history else 0, "ndcg": None}


def digest(model: LightGCN) -> str:
    """A short hash of the weights: every rank must end with the same one."""
    return hashlib.sha256(model.table().numpy().tobytes()).hexdigest()[:16]


def export(cfg, model: LightGCN, data: Data, run: Run, state, foldin_report: dict, digests, fp) -> None:
    """Rank 0 writes the embeddings, the fold-in vectors and the manifest to <root>/model."""
    model_uri, graph = storage.stage_uri(cfg, "model"), data.graph
    P, best = graph.num_playlists, state.best
    final, foldin = (t.cpu().numpy() for t in model.embeddings(data.adj, data.track_degree))
    manifest = {
        "dim": cfg.model.dim, "layers": cfg.model.layers, "use_edge_weight": cfg.model.use_edge_weight,
        "playlists": P, "tracks": graph.num_tracks, "edges": graph.num_edges,
        "embed_min_playlists": cfg.model.embed_min_playlists,
        "epochs_run": len(state.history) and state.history[-1]["epoch"],
        "best": best, "world_size": run.world, "device": str(run.device), "rank_param_digests": digests,
        "batch_size": data.batch, "steps_per_epoch": data.steps, "foldin": foldin_report, "budget": state.budget,
        "input": {"graph": storage.stage_uri(cfg, "graph"), "graph_version": data.committed.version},
        "config": redacted(cfg.to_dict()), "fingerprint": fp,
    }
    marker = write_model(storage.StageWriter(model_uri), final[:P], final[P:], foldin, manifest, state.history)
    log.info("model committed at %s (%s): best epoch %s, val NDCG %s; fold-in for new playlists: %s",
             model_uri, marker["version"], best["epoch"],
             best["ndcg"] if best["ndcg"] is None else f"{best['ndcg']:.4f}", foldin_report["chosen"])
    if data.validating:  # what a final fit on every playlist should reuse (README: the final fit)
        log.info("for a final fit on all playlists: --set train.epochs=%d --set recommend.foldin=%s",
                 best["epoch"], foldin_report["chosen"])


def main(argv: list[str] | None = None) -> int:
    # ---- config and processes
    parser = argparse.ArgumentParser(prog="train/main.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    args = parser.parse_args(argv)
    rank = torchrun_rank()
    setup_logging(rank=rank, quiet=bool(rank))
    cfg = config_from_args(args)
    train_cfg = cfg.train
    run = start(train_cfg)

    # ---- data, model, optimizer
    data = load_data(cfg, run)
    model = LightGCN(data.graph.num_playlists, data.graph.num_tracks, cfg.model.dim, cfg.model.layers,
                     cfg.model.init_std).to(run.device)
    step_fn = DDP(model, device_ids=[run.local_rank] if run.device.type == "cuda" else None) if run.ddp else model
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)

    # ---- resume: a restarted job continues from its newest checkpoint, the one rank 0 chose
    ckpt_dir = storage.join(storage.stage_uri(cfg, "model"), "checkpoints")
    fp = checkpoint.fingerprint(cfg, data.committed.version, run.world)
    state = checkpoint.resume_together(ckpt_dir, fp, model, opt, run.rank) if train_cfg.resume else None
    if state is not None:
        log.info("resumed from checkpoint epoch %d (%s)", state.epoch, fp)
    elif run.master:
        checkpoint.clear(ckpt_dir)
    state = state or checkpoint.TrainState()
    if state.budget:            # stopped by a budget before: this run's budget decides again
        state.stopped, state.budget = False, None
    run.barrier()

    # ---- training loop
    # Per-epoch validation scores new playlists as recommend will (auto: the optimized fold-in,
    # which validated best on the real sets; bench/BENCHMARKS.md); the end compares every mode.
    val_spec = FoldIn.from_config(cfg.recommend)
    budget = Budget(train_cfg, sum(h.get("steps", data.steps) for h in state.history))
    for epoch in range(state.epoch + 1, train_cfg.epochs + 1):
        if state.stopped:
            break
        model.train()
        entry, spent = train_epoch(step_fn, opt, data, run, train_cfg, epoch, budget)
        # a budget-stopped (partial) epoch is validated like a whole one: it may be the best
        if data.validating and (epoch % train_cfg.val_every == 0 or epoch == train_cfg.epochs or spent):
            model.eval()
            entry["val"] = validate(model, data.adj, data.track_degree, data.val_shard, cfg.evaluate.k,
                                    run.world, val_spec)
        state.end_epoch(entry, model, train_cfg.patience)
        if spent:
            state.stopped, state.budget = True, {"max_minutes": train_cfg.max_minutes, "max_steps": train_cfg.max_steps,
                                                 "epoch": epoch, "steps": entry["steps"], "of": data.steps}
        if run.master:
            log_epoch(entry, state)
            checkpoint.save_run(ckpt_dir, fp, state, model, opt, train_cfg.keep_checkpoints)
        run.barrier()

    # ---- keep the best validated epoch (the same on every rank), choose the fold-in, export
    # Adam's moments and the gradients are done with; at the MPD's size they are GBs a rank that
    # the fold-in comparison's propagations need (the 1M rehearsal ran out of memory there).
    opt.state.clear()
    model.zero_grad(set_to_none=True)
    keep_best(model, state)
    digests = distributed.gather(digest(model))      # of the weights that ship, on every rank
    model.eval()
    foldin_report = choose_foldin(model, data.adj, data.track_degree,
                                  data.val_shard if data.validating else None, cfg, run.world)
    if run.master:
        export(cfg, model, data, run, state, foldin_report, digests, fp)
    if run.ddp:
        run.barrier()
        # Keep the DDP wrapper (its Reducer holds the process group) alive past main(): freeing it
        # destroys gloo's process group, which can deadlock (its worker thread waits for the GIL
        # while the main thread joins it). The entry point leaves with exit_without_teardown().
        KEEP_ALIVE.append(step_fn)
    return 0


def redacted(cfg: dict) -> dict:
    """The config with secret values masked (for manifests)."""
    s = dict(cfg.get("storage", {}))
    for k in s:
        if ("secret" in k or "key_id" in k) and s[k]:
            s[k] = "***"
    return {**cfg, "storage": s}


if __name__ == "__main__":
    run_worker(main, "train")
