"""Train LightGCN with a BPR loss on the committed graph; write embeddings to <root>/model.

    torchrun --nproc_per_node=N train/main.py --root URI [--config FILE] [--set train.epochs=3]
    python train/main.py --root URI                  (one process)
    musicmap train --root URI --nproc N              (launches torchrun locally)

Each rank propagates the whole graph (LGConv over a normalised torch.sparse CSR adjacency) and
draws its BPR batches from its own share of the train edges, reshuffled every epoch from the seed;
DistributedDataParallel averages the gradients, so all ranks hold the same weights. nccl on CUDA,
gloo on CPU. Rank 0 logs, checkpoints every epoch (a restarted job resumes by itself) and writes
the output. Validation (sharded over ranks) picks the best epoch and stops early.
"""
from __future__ import annotations

import hashlib
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from musicmap import metrics, storage
from musicmap.log import get_logger, progress, setup_logging
from musicmap.train import checkpoint
from musicmap.train.data import Graph, load_eval, load_graph, load_tracks, uri_index
from musicmap.train.export import write_model
from musicmap.train.launch import _KEEP_ALIVE, init_distributed, run_worker
from musicmap.train.model import LightGCN, bpr_loss, foldin_vectors
from musicmap.train.scoring import FOLDIN_MODES, FoldIn, seed_queries, topk

log = get_logger("train")


class BPRStep(torch.nn.Module):
    """What DDP wraps: one BPR batch through the model (DDP hooks forward only)."""

    def __init__(self, model: LightGCN):
        super().__init__()
        self.model = model

    def forward(self, adj, playlists, pos, neg, dtype=None):
        return self.model.bpr_scores(adj, playlists, pos, neg, dtype)


def per_rank_batch(num_edges: int, world: int, batch_size: int, min_steps: int) -> int:
    """BPR positives per step per rank: train.batch_size, made smaller where it would give an
    epoch fewer than `min_steps` steps. A 50K-edge graph then gets as many Adam steps per epoch
    as a 50M-edge one gets from the full batch (one step per epoch learns nothing)."""
    if min_steps > 0:
        batch_size = min(batch_size, max(1, math.ceil(num_edges / (world * min_steps))))
    return batch_size


def epoch_batches(num_edges: int, world: int, rank: int, batch: int, seed: int, epoch: int):
    """This rank's edge ids for each step of an epoch: one permutation shared by all ranks
    (seeded by seed and epoch), cut into steps of world * batch edges, each step dealt to the
    ranks round-robin. Every rank gets the same number of steps (a final remainder smaller than
    the world size is dropped: it is reshuffled into the next epoch)."""
    perm = np.random.default_rng([seed, epoch]).permutation(num_edges)
    usable = num_edges - num_edges % world
    perm = perm[:usable]
    steps = max(1, math.ceil(usable / (world * batch)))
    for s in range(steps):
        yield perm[s * world * batch:(s + 1) * world * batch][rank::world]


def sample_negatives(graph: Graph, playlists: np.ndarray, n: int, reject: bool,
                     gen: np.random.Generator) -> np.ndarray:
    """(B, n) random tracks for each playlist; with reject, tracks of the playlist itself are
    redrawn (up to 3 rounds; the rare leftover stays, as in most BPR samplers)."""
    T = graph.num_tracks
    neg = gen.integers(0, T, (len(playlists), n))
    if reject:
        keys = graph.positive_keys()
        for _ in range(3):
            k = playlists[:, None] * T + neg
            pos = np.searchsorted(keys, k).clip(max=len(keys) - 1)
            hit = keys[pos] == k
            if not hit.any():
                break
            neg[hit] = gen.integers(0, T, int(hit.sum()))
    return neg


@torch.no_grad()
def validate(model: LightGCN, adj, track_degree: torch.Tensor, cases, k: int, world: int,
             foldin_spec: FoldIn = FoldIn()) -> dict:
    """Mean R-precision, NDCG and clicks over the validation cases, each scored from its seeds
    as `foldin_spec` says (each rank scores its share; sums are all-reduced so every rank gets
    the same numbers)."""
    xs = model.layer_outputs(adj)
    final = torch.stack(xs).mean(0)
    foldin = foldin_vectors(xs, track_degree, model.num_playlists)
    tracks = final[model.num_playlists:]
    sums = torch.zeros(4, dtype=torch.float64)
    if len(cases):
        q = seed_queries(cases.seeds, foldin, tracks, foldin_spec)
        _, ranked = topk(q, tracks, k, exclude=cases.seeds)
        for r, h in zip(ranked, cases.holdouts):
            m = metrics.case_metrics(r, h, k=k)
            if m is not None:
                sums += torch.tensor([m["r_precision"], m["ndcg"], m["clicks"], 1.0], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(sums)
    n = max(sums[3].item(), 1.0)
    return {"r_precision": sums[0].item() / n, "ndcg": sums[1].item() / n,
            "clicks": sums[2].item() / n, "cases": int(sums[3].item())}


def choose_foldin(model: LightGCN, adj, track_degree, val_shard, cfg, world: int) -> dict:
    """Validation NDCG of every fold-in mode (train.scoring.FOLDIN_MODES) on the kept weights,
    and the one recommend uses when recommend.foldin is auto: the best on validation, else
    (no validation cases) the optimized fold-in, the best on the real sets we measured."""
    rc = cfg.recommend
    report = {"formula": {"lightgcn": "sum_{t in S} f_t / sqrt(|S|), f_t = 1/(L+1) sum_{k<L} x_t^(k) / sqrt(d_t)",
                          "mean": "mean of the seeds' final embeddings",
                          "optimized": f"the mean, then {rc.foldin_steps} Adam steps of BPR against fixed tracks"},
              "val": {}}
    if val_shard is not None:
        for mode in FOLDIN_MODES:
            report["val"][mode] = validate(model, adj, track_degree, val_shard, cfg.evaluate.k, world,
                                           FoldIn.from_config(rc, mode))
    if rc.foldin != "auto":
        report["chosen"], report["by"] = rc.foldin, "recommend.foldin"
    elif report["val"]:
        report["chosen"] = max(FOLDIN_MODES, key=lambda m: report["val"][m]["ndcg"])
        report["by"] = "validation NDCG"
    else:
        report["chosen"], report["by"] = "optimized", "default (no validation cases)"
    return report


def param_digest(model: LightGCN) -> str:
    return hashlib.sha256(model.embedding.weight.detach().cpu().numpy().tobytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    # ---------------------------------------------------------------- arguments -> config
    import argparse

    from musicmap.cli import add_config_args, config_from_args
    parser = argparse.ArgumentParser(prog="train/main.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    args = parser.parse_args(argv)
    ddp = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", 0)) if ddp else 0
    setup_logging(rank=rank if ddp else None, quiet=rank != 0)
    cfg = config_from_args(args)
    tc = cfg.train

    # ---------------------------------------------------------------- distributed setup
    use_cuda = tc.device == "cuda" or (tc.device == "auto" and torch.cuda.is_available())
    if ddp:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        init_distributed("nccl" if use_cuda else "gloo", tc.dist_timeout_s)
        world = dist.get_world_size()
    else:
        local_rank, world = 0, 1
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    master = rank == 0
    torch.manual_seed(tc.seed)
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    dtype = torch.bfloat16 if (tc.bf16 and use_cuda) else None

    # ---------------------------------------------------------------- data
    graph_uri, model_uri = storage.stage_uri(cfg, "graph"), storage.stage_uri(cfg, "model")
    graph, committed = load_graph(graph_uri)
    adj = graph.adjacency(cfg.model.use_edge_weight).to(device)
    P, T, E = graph.num_playlists, graph.num_tracks, graph.num_edges
    track_degree = torch.from_numpy(graph.degrees(cfg.model.use_edge_weight)[P:]).float().to(device)
    tracks_table = load_tracks(committed, ["track_idx", "track_uri"])
    val = load_eval(committed, "val", uri_index(tracks_table))
    with_seeds = [i for i in range(len(val)) if len(val.seeds[i])]
    if tc.val_max_cases and len(with_seeds) > tc.val_max_cases:
        pick = np.random.default_rng([tc.seed, 7]).choice(len(with_seeds), tc.val_max_cases, replace=False)
        with_seeds = [with_seeds[i] for i in np.sort(pick)]
    val_shard = val.subset(with_seeds[rank::world])
    validating = bool(tc.val_every) and len(with_seeds) > 0
    batch = per_rank_batch(E, world, tc.batch_size, tc.min_steps_per_epoch)
    steps = max(1, math.ceil((E - E % world) / (world * batch)))
    # Per-epoch validation scores new playlists as recommend will (auto: the optimized fold-in,
    # which validated best on the real sets; bench/BENCHMARKS.md); the end compares every mode.
    rc = cfg.recommend
    val_spec = FoldIn.from_config(rc, "optimized" if rc.foldin == "auto" else None)
    log.info("graph %s: %d playlists, %d tracks, %d edges; %d validation cases; world %d on %s; "
             "%d steps per epoch of %d positives per rank", committed.version, P, T, E,
             len(with_seeds), world, device, steps, batch)
    if tc.val_every and not validating:
        log.warning("no validation cases with seeds (graph.val_fraction=0?): nothing to pick an "
                    "epoch by, so training runs all %d epochs and keeps the last", tc.epochs)

    # ---------------------------------------------------------------- model, optimizer
    model = LightGCN(P, T, cfg.model.dim, cfg.model.layers, cfg.model.init_std).to(device)
    step_fn = BPRStep(model)
    if ddp:
        step_fn = DDP(step_fn, device_ids=[local_rank] if use_cuda else None)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)

    # ---------------------------------------------------------------- resume
    ckpt_dir = storage.join(model_uri, "checkpoints")
    fp = checkpoint.fingerprint(cfg, committed.version, world)
    state = checkpoint.load_latest(ckpt_dir, fp) if tc.resume else None
    start, history, best, bad, stopped, best_weights = 0, [], {"epoch": 0, "ndcg": -1.0}, 0, False, None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history, best, bad, stopped = (state["epoch"], state["history"], state["best"],
                                              state["bad_validations"], state["stopped"])
        best_weights = state.get("best_weights")
        torch.set_rng_state(state["rng"])
        log.info("resumed from checkpoint epoch %d (%s)", start, fp)
    elif master:
        checkpoint.clear(ckpt_dir)
    if ddp:
        dist.barrier()

    # ---------------------------------------------------------------- training loop
    for epoch in range(start + 1, tc.epochs + 1):
        if stopped:
            break
        t0 = time.time()
        model.train()
        gen = np.random.default_rng([tc.seed, epoch, rank, 1])
        loss_sum, seen = 0.0, 0
        bar = progress(total=steps, desc=f"epoch {epoch}/{tc.epochs}", unit="step",
                       disable=not (master and tc.progress))
        for ids in epoch_batches(E, world, rank, batch, tc.seed, epoch):
            u = graph.playlist[ids]
            neg = sample_negatives(graph, u, tc.negatives, tc.reject_positives, gen)
            u_t = torch.from_numpy(u).to(device)
            i_t = torch.from_numpy(graph.track[ids]).to(device)
            j_t = torch.from_numpy(neg).to(device)
            pos_s, neg_s, reg = step_fn(adj, u_t, i_t, j_t, dtype)
            loss = bpr_loss(pos_s, neg_s, reg, tc.l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(ids)
            seen += len(ids)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}",
                            edges_per_s=f"{seen * world / max(time.time() - t0, 1e-9):,.0f}", refresh=False)
        bar.close()
        totals = torch.tensor([loss_sum, seen], dtype=torch.float64)
        if ddp:
            dist.all_reduce(totals)
        entry = {"epoch": epoch, "loss": totals[0].item() / max(totals[1].item(), 1),
                 "seconds": round(time.time() - t0, 2),
                 "edges_per_s": round(totals[1].item() / max(time.time() - t0, 1e-9))}
        if validating and (epoch % tc.val_every == 0 or epoch == tc.epochs):
            model.eval()
            entry["val"] = validate(model, adj, track_degree, val_shard, cfg.evaluate.k, world, val_spec)
            if entry["val"]["ndcg"] > best["ndcg"]:
                best, bad = {"epoch": epoch, **entry["val"]}, 0
                best_weights = model.embedding.weight.detach().cpu().clone()
            else:
                bad += 1
                stopped = bool(tc.patience) and bad >= tc.patience
        history.append(entry)
        if master:
            v = entry.get("val")
            log.info("epoch %d: loss %.4f, %.1fs (%s edges/s)%s%s", epoch, entry["loss"], entry["seconds"],
                     f"{entry['edges_per_s']:,}",
                     f", val NDCG {v['ndcg']:.4f} R-prec {v['r_precision']:.4f} clicks {v['clicks']:.2f}" if v else "",
                     f" - no improvement for {bad} validations, stopping" if stopped else "")
            checkpoint.save(ckpt_dir, epoch, {
                "epoch": epoch, "fingerprint": fp, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "history": history, "best": best,
                "bad_validations": bad, "stopped": stopped, "best_weights": best_weights,
                "rng": torch.get_rng_state()}, tc.keep_checkpoints)
        if ddp:
            dist.barrier()

    # ---------------------------------------------------------------- best epoch, fold-in choice
    digests = [None] * world
    if ddp:
        dist.all_gather_object(digests, param_digest(model))
    else:
        digests = [param_digest(model)]
    if best_weights is not None:  # the best validated epoch, not the last one (same on every rank)
        with torch.no_grad():
            model.embedding.weight.copy_(best_weights.to(device))
    else:
        best = {"epoch": history[-1]["epoch"] if history else 0, "ndcg": None}
    model.eval()
    foldin_report = choose_foldin(model, adj, track_degree, val_shard if validating else None,
                                  cfg, world)

    # ---------------------------------------------------------------- output (rank 0)
    if master:
        with torch.no_grad():
            xs = model.layer_outputs(adj)
            final = torch.stack(xs).mean(0).cpu().numpy()
            foldin = foldin_vectors(xs, track_degree, P).cpu().numpy()
        manifest = {
            "dim": cfg.model.dim, "layers": cfg.model.layers, "use_edge_weight": cfg.model.use_edge_weight,
            "playlists": P, "tracks": T, "edges": E, "epochs_run": len(history) and history[-1]["epoch"],
            "best": best, "world_size": world, "device": str(device), "rank_param_digests": digests,
            "batch_size": batch, "steps_per_epoch": steps, "foldin": foldin_report,
            "input": {"graph": graph_uri, "graph_version": committed.version},
            "config": redacted(cfg.to_dict()), "fingerprint": fp,
        }
        marker = write_model(storage.StageWriter(model_uri), final[:P], final[P:], foldin, manifest, history)
        log.info("model committed at %s (%s): best epoch %s, val NDCG %s; fold-in for new playlists: %s",
                 model_uri, marker["version"], best["epoch"],
                 best["ndcg"] if best["ndcg"] is None else f"{best['ndcg']:.4f}", foldin_report["chosen"])
        if validating:  # what a final fit on every playlist should reuse (README: the final fit)
            log.info("for a final fit on all playlists: --set train.epochs=%d --set recommend.foldin=%s",
                     best["epoch"], foldin_report["chosen"])
    if ddp:
        dist.barrier()
        # Keep the DDP wrapper (its Reducer holds the process group) alive past main(): freeing it
        # destroys gloo's process group, which can deadlock (its worker thread waits for the GIL
        # while the main thread joins it). The entry point leaves with exit_without_teardown().
        _KEEP_ALIVE.append(step_fn)
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
