"""Trainer benchmark (issue 4): our torchrun LightGCN trainer against the method of PyTorch
Geometric's LightGCN example, on a generated graph at the seed system's scale.

    python -m bench.bench_train --scale small --epochs 5                 # smoke run, minutes
    python -m bench.bench_train --scale seed --max-steps 10 --epochs 2   # seed scale, partial epochs
    python -m bench.bench_train --scale seed --nproc 1 --device cuda --skip-reference   (GPU check)

What is measured
  ours       `torchrun --standalone --nproc_per_node=N bench/bench_train.py _trainer ... -- --root R
             --set ...`: the `_trainer` entry calls train.main.main() unchanged (the same function
             `python train/main.py` runs). With --max-steps K each epoch is cut to its first K steps
             (musicmap.train.batches.epoch_batches wrapped; nothing else changes) and seconds per epoch are
             extrapolated: epoch seconds = (history seconds of the cut epoch) x steps per epoch / K.
             Seconds come from model/<version>/history.json ("seconds": the training loop of the
             epoch, without validation or checkpoint). On CPU each rank runs one torch thread
             (OMP_NUM_THREADS=1: N processes on N cores).
             Peak memory per process: each rank writes its own getrusage(RUSAGE_SELF).ru_maxrss
             (peak resident set, exact; on CUDA also torch.cuda.max_memory_allocated) at exit;
             cross-checked by psutil polling of the process tree every 0.2 s.
  reference  PyG examples/lightgcn.py, in one process with torch threads = --ref-threads (2: both
             cores): torch_geometric.nn.models.LightGCN(num_nodes, 64, 2) over the symmetric COO
             edge_index (what the example passes; torch-sparse/SparseTensor is not installed, so
             LGConv takes PyG's gather/scatter path and renormalises with gcn_norm at every
             call), a DataLoader over the train edges (shuffle, batch 8192), one uniformly random
             negative track per positive, `model(edge_index, edge_label_index)` (full propagation
             of the whole graph at every step), `model.recommendation_loss(pos, neg,
             node_id=edge_label_index.unique())` (BPR + 1e-4 L2), Adam lr 0.001.
             Seconds per epoch = mean step time over the steps run x ceil(E / 8192) steps
             (extrapolated when fewer than an epoch of steps ran).
  NDCG       both models are scored by the same function, musicmap.train.validate.validate, on the same
             validation cases (those with seeds, at most train.val_max_cases, drawn as the trainer
             draws them): the reference's layer-0 table is copied into a train.model.LightGCN,
             whose propagation (Â = D^-1/2 A D^-1/2, mean of x_0..x_2) is exactly the reference's
             (gcn_norm without self-loops, alpha = 1/3), and validation playlists (not in the
             graph) are folded in from their seed tracks as the trainer does.
  equal wall time   the reference trains for as many training seconds as ours took (validation,
             loading and checkpoints excluded on both sides) and is validated at the same
             cumulative training seconds as each of our epochs.
  equal epochs      with --ref-epochs E the reference also runs E full epochs, validated at each.

The graph is written by bench/graphgen.py (the Spark pipeline is too slow at this scale on a small
machine) under bench/out/<scale>/ unless it is already there. Results go to
bench/out/<scale>/bench_train.json and a table is printed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np
import torch
from torch_geometric.nn import LightGCN as PygLightGCN

import musicmap.train.main as tm
from bench import graphgen
from bench.common import ProcessTreeMemory
from musicmap import storage
from musicmap.cases import load_eval
from musicmap.config import load_config
from musicmap.distributed import exit_without_teardown
from musicmap.graph import load_graph, load_tracks, uri_index
from musicmap.train.model import LightGCN as OurLightGCN
from musicmap.train.validate import validate

REF_BATCH = 8192
REF_LR = 0.001


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# =============================================================================== _trainer entry
def trainer_entry(argv: list[str]) -> int:
    """torchrun target: train.main.main(rest) with epochs optionally cut to --max-steps steps,
    then this rank's peak memory to --mem-dir/rank<R>.json."""
    ap = argparse.ArgumentParser(prog="bench_train.py _trainer")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--mem-dir", required=True)
    if "--" in argv:
        i = argv.index("--")
        mine, rest = argv[:i], argv[i + 1:]
    else:
        mine, rest = argv, []
    a = ap.parse_args(mine)

    if a.max_steps:
        full = tm.epoch_batches   # the name the training loop calls

        def cut(*args, **kw):
            for s, ids in enumerate(full(*args, **kw)):
                if s >= a.max_steps:
                    return
                yield ids
        tm.epoch_batches = cut
    rc = tm.main(rest)
    rank = int(os.environ.get("RANK", 0))
    mem = {"rank": rank, "pid": os.getpid(),
           "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "threads": torch.get_num_threads()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        mem["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        mem["cuda_max_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
        mem["gpu"] = torch.cuda.get_device_name()
    os.makedirs(a.mem_dir, exist_ok=True)
    with open(os.path.join(a.mem_dir, f"rank{rank}.json"), "w") as f:
        json.dump(mem, f)
    return rc


def run_ours(root: str, out_dir: Path, nproc: int, epochs: int, max_steps: int, device: str,
             sets: list[str], threads: int | None) -> dict:
    """Our trainer under torchrun; returns timings, validation and memory."""
    mem_dir = out_dir / "ours_mem"
    for f in mem_dir.glob("rank*.json") if mem_dir.exists() else []:
        f.unlink()
    overrides = [f"train.epochs={epochs}", f"train.device={device}", "train.progress=false",
                 "train.patience=0", "train.val_every=1", "train.resume=false", *sets]
    main_args = ["--root", root] + [x for s in overrides for x in ("--set", s)]
    entry = [str(REPO / "bench" / "bench_train.py"), "_trainer", "--max-steps", str(max_steps),
             "--mem-dir", str(mem_dir), "--"] + main_args
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}"] + entry
    else:
        cmd = [sys.executable] + entry
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads or (1 if nproc > 1 else os.cpu_count()))
    env.setdefault("PYTHONUNBUFFERED", "1")
    print("$ " + " ".join(f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}".split() + cmd), flush=True)
    t0 = time.time()
    la0 = loadavg()
    log_path = out_dir / "ours.log"
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        with ProcessTreeMemory(p.pid) as poll:
            rc = p.wait()
    wall = time.time() - t0
    if rc != 0:
        print(open(log_path).read()[-4000:])
        raise SystemExit(f"our trainer failed (rc {rc}); log: {log_path}")
    m = storage.open_committed(storage.join(root, "model"), "train")
    history = storage.read_json(m.path("history.json"))
    manifest = storage.read_json(m.path("manifest.json"))
    E, W = manifest["edges"], manifest["world_size"]
    batch = manifest.get("batch_size", manifest["config"]["train"]["batch_size"])  # per rank, after the schedule
    steps_full = max(1, math.ceil((E - E % W) / (W * batch)))
    steps_run = min(max_steps, steps_full) if max_steps else steps_full
    per_epoch = [h["seconds"] * steps_full / steps_run for h in history]
    ranks = []
    for f in sorted(mem_dir.glob("rank*.json")):
        ranks.append(json.loads(f.read_text()))
    polled = {pid: rss for pid, rss in poll.peak.items() if poll.cmd.get(pid, (0,))[0] != os.getpid() or nproc == 1}
    for r in ranks:
        r["polled_peak_rss_mib"] = round(polled.get(r["pid"], 0) / 2**20, 1) if r["pid"] in polled else None
    cum, t = [], 0.0
    for h in history:
        t += h["seconds"]
        cum.append(round(t, 2))
    return {
        "command": " ".join(cmd), "omp_num_threads": env["OMP_NUM_THREADS"], "rc": rc,
        "wall_s": round(wall, 1), "loadavg_before": la0, "loadavg_after": loadavg(),
        "world_size": W, "device": manifest["device"], "edges": E, "playlists": manifest["playlists"],
        "tracks": manifest["tracks"], "batch_size": batch, "global_batch": batch * W,
        "steps_per_epoch": steps_full, "steps_run_per_epoch": steps_run,
        "extrapolated": steps_run < steps_full,
        "train": {k: manifest["config"]["train"][k] for k in
                  ("batch_size", "lr", "l2", "negatives", "reject_positives", "random_seed", "bf16",
                   "deterministic", "val_max_cases")},
        "model": {k: manifest["config"]["model"][k] for k in ("dim", "layers", "use_edge_weight", "init_std")},
        "history": history, "train_seconds_cum": cum,
        "seconds_per_epoch": per_epoch, "seconds_per_step": [h["seconds"] / steps_run for h in history],
        "val_ndcg": [h.get("val", {}).get("ndcg") for h in history],
        "ranks": ranks, "max_rss_children_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "log": str(log_path),
    }


# =============================================================================== reference
def _reference_args(argv: list[str]):
    ap = argparse.ArgumentParser(prog="bench_train.py _reference")
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget-s", type=float, default=0.0,
                    help="train until this many training seconds (0: no time budget)")
    ap.add_argument("--eval-at", default="", help="comma-separated training seconds to validate at")
    ap.add_argument("--epochs", type=int, default=0, help="also run this many full epochs (validated at each)")
    ap.add_argument("--min-steps", type=int, default=0, help="at least this many steps (timing)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no cap)")
    ap.add_argument("--decomposed-layers", type=int, default=1,
                    help="PyG MessagePassing feature chunking (1 = the example; >1 bounds memory)")
    ap.add_argument("--adj", choices=["edge_index", "csr"], default="edge_index",
                    help="edge_index: the example on this machine (COO gather/scatter); csr: a "
                         "torch.sparse CSR adjacency (what SparseTensor would give)")
    ap.add_argument("--random-seed", type=int, default=0)
    return ap.parse_args(argv)


def _reference_inputs(a, dev) -> dict:
    """The example's edge tensors, and the trainer's validation harness (adjacency, cases)."""
    cfg = load_config(None, [], root=a.root)
    graph, committed = load_graph(storage.stage_uri(cfg, "graph"))
    P, T = graph.num_playlists, graph.num_tracks
    # the example: data.to_homogeneous() holds both directions; labels are user -> item edges
    src, dst = torch.from_numpy(graph.playlist), torch.from_numpy(graph.track + P)
    ei = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    if a.adj == "edge_index":
        edge_index = ei.to(dev)
    else:   # un-normalised symmetric CSR; LGConv(normalize=True) normalises it with gcn_norm
        edge_index = torch.sparse_coo_tensor(ei, torch.ones(ei.shape[1]), (P + T, P + T)).coalesce().to_sparse_csr().to(dev)
    val = load_eval(committed, "val", uri_index(load_tracks(committed, ["track_idx", "track_uri"])))
    with_seeds = [i for i in range(len(val)) if len(val.seeds[i])]
    tc = cfg.train
    if tc.val_max_cases and len(with_seeds) > tc.val_max_cases:
        pick = np.random.default_rng([tc.random_seed, 7]).choice(len(with_seeds), tc.val_max_cases, replace=False)
        with_seeds = [with_seeds[i] for i in np.sort(pick)]
    return {"cfg": cfg, "P": P, "T": T, "E": graph.num_edges, "edge_index": edge_index,
            "labels": torch.stack([src, dst]).to(dev), "adj": graph.adjacency(False).to(dev),
            "track_degree": torch.from_numpy(graph.degrees(False)[P:]).float().to(dev), "cases": val.subset(with_seeds)}


def _reference_step(model, optimizer, x: dict, index, dev) -> tuple[float, int]:
    """One step of the example's loop: (loss, positives)."""
    pos = x["labels"][:, index.to(dev)]
    neg = torch.stack([pos[0], torch.randint(x["P"], x["P"] + x["T"], (index.numel(),), device=dev)], dim=0)
    edge_label_index = torch.cat([pos, neg], dim=1)
    optimizer.zero_grad()
    pos_rank, neg_rank = model(x["edge_index"], edge_label_index).chunk(2)
    loss = model.recommendation_loss(pos_rank, neg_rank, node_id=edge_label_index.unique())
    loss.backward()
    optimizer.step()
    return float(loss.detach()), pos_rank.numel()


def _reference_loop(a, x: dict, model, optimizer, validate_now, dev) -> dict:
    """The example's training loop, until the budget, steps or epochs say: step times, losses and
    the validations made."""
    loader = torch.utils.data.DataLoader(range(x["E"]), shuffle=True, batch_size=REF_BATCH)
    eval_at = sorted(float(v) for v in a.eval_at.split(",") if v)
    r = {"evals": [], "step_times": [], "losses": [], "steps_per_epoch": len(loader)}
    train_s, step, epoch, done = 0.0, 0, 0, False
    while not done:
        epoch += 1
        total_loss = total_examples = 0.0
        for index in loader:
            sync(dev)
            t0 = time.time()
            lv, n = _reference_step(model, optimizer, x, index, dev)
            sync(dev)
            dt = time.time() - t0
            step, train_s = step + 1, train_s + dt
            r["step_times"].append(dt)
            r["losses"].append(lv)
            total_loss, total_examples = total_loss + lv * n, total_examples + n
            if step <= 3 or step % 50 == 0:
                print(f"reference step {step}: {dt:.2f}s, loss {lv:.4f}, train {train_s:.1f}s", flush=True)
            while eval_at and train_s >= eval_at[0]:
                at, v = eval_at.pop(0), validate_now()
                r["evals"].append({"at_train_s": at, "train_s": round(train_s, 2), "step": step,
                                   "epochs": round(step / len(loader), 4), **v})
                print(f"reference validation at {train_s:.1f}s (step {step}): NDCG {v['ndcg']:.4f}", flush=True)
            done = bool(a.max_steps and step >= a.max_steps) or (
                a.epochs == 0 and (a.budget_s > 0 or a.min_steps > 0) and train_s >= a.budget_s
                and not eval_at and step >= a.min_steps)
            if done:
                break
        else:   # a full epoch ran
            v = validate_now()
            r["evals"].append({"at_epoch": epoch, "train_s": round(train_s, 2), "step": step, "epochs": epoch,
                               "loss": total_loss / max(total_examples, 1), **v})
            print(f"reference epoch {epoch}: loss {total_loss / max(total_examples, 1):.4f}, "
                  f"train {train_s:.1f}s, val NDCG {v['ndcg']:.4f}", flush=True)
            done = epoch >= a.epochs and train_s >= a.budget_s and not eval_at and step >= a.min_steps
    if not r["evals"] or r["evals"][-1]["step"] != step:
        r["evals"].append({"final": True, "train_s": round(train_s, 2), "step": step,
                           "epochs": round(step / len(loader), 4), **validate_now()})
    return {**r, "steps": step, "train_s": train_s}


def sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def reference_entry(argv: list[str]) -> int:
    """The PyG example's training loop (see module doc); writes a JSON result."""
    a = _reference_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.random_seed)
    dev = torch.device(a.device)
    t_load = time.time()
    x = _reference_inputs(a, dev)
    load_s = time.time() - t_load
    model = PygLightGCN(num_nodes=x["P"] + x["T"], embedding_dim=64, num_layers=2,
                        decomposed_layers=a.decomposed_layers).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=REF_LR)
    evaluator = OurLightGCN(x["P"], x["T"], 64, 2).to(dev)

    def validate_now():
        with torch.no_grad():
            evaluator.load_table(model.embedding.weight)
        evaluator.eval()
        t = time.time()
        v = validate(evaluator, x["adj"], x["track_degree"], x["cases"], x["cfg"].evaluate.k, 1)
        return {**v, "seconds": round(time.time() - t, 1)}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r = _reference_loop(a, x, model, optimizer, validate_now, dev)
    mean_step, spe = float(np.mean(r["step_times"])), r["steps_per_epoch"]
    res = {
        "method": "PyG examples/lightgcn.py", "adj": a.adj, "decomposed_layers": a.decomposed_layers,
        "device": str(dev), "threads": torch.get_num_threads(), "batch": REF_BATCH, "lr": REF_LR,
        "edges": x["E"], "playlists": x["P"], "tracks": x["T"], "load_s": round(load_s, 1),
        "steps": r["steps"], "steps_per_epoch": spe, "train_s": round(r["train_s"], 2),
        "mean_step_s": mean_step, "median_step_s": float(np.median(r["step_times"])),
        "first_step_s": r["step_times"][0], "seconds_per_epoch": mean_step * spe,
        "extrapolated": r["steps"] < spe, "loss_last": r["losses"][-1], "evals": r["evals"],
        "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "maxrss_before_training_mib": round(rss_before, 1),
    }
    if dev.type == "cuda":
        res["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        res["gpu"] = torch.cuda.get_device_name()
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


def run_reference(root: str, out_dir: Path, threads: int, device: str, budget_s: float, eval_at: list[float],
                  epochs: int, min_steps: int, max_steps: int, decomposed: int, adj: str, tag: str,
                  mem_limit_gb: float = 0.0) -> dict:
    out = out_dir / f"reference_{tag}.json"
    if out.exists():
        out.unlink()
    cmd = [sys.executable, "-m", "bench.bench_train", "_reference", "--root", root,
           "--out", str(out), "--threads", str(threads), "--device", device,
           "--budget-s", f"{budget_s:.2f}", "--eval-at", ",".join(f"{x:.2f}" for x in eval_at),
           "--epochs", str(epochs), "--min-steps", str(min_steps), "--max-steps", str(max_steps),
           "--decomposed-layers", str(decomposed), "--adj", adj]
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    print("$ OMP_NUM_THREADS=%d %s" % (threads, " ".join(cmd)), flush=True)
    la0 = loadavg()
    t0 = time.time()
    log_path = out_dir / f"reference_{tag}.log"
    def limit():   # an allocation past the limit fails in the reference alone (no OOM killer)
        if mem_limit_gb:
            lim = int(mem_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)
        with ProcessTreeMemory(p.pid) as poll:
            rc = p.wait()
    if rc != 0 or not out.exists():
        tail = open(log_path).read()[-3000:]
        print(tail)
        print(f"reference [{tag}] failed (rc {rc}); log: {log_path}", flush=True)
        return {"failed": True, "rc": rc, "command": " ".join(cmd), "log": str(log_path),
                "log_tail": tail[-800:], "polled_peak_rss_mib": round(max(poll.peak.values(), default=0) / 2**20, 1)}
    res = json.loads(out.read_text())
    res.update(command=" ".join(cmd), wall_s=round(time.time() - t0, 1), loadavg_before=la0,
               loadavg_after=loadavg(), polled_peak_rss_mib=round(max(poll.peak.values(), default=0) / 2**20, 1),
               log=str(log_path))
    return res


# =============================================================================== report
def ndcg_at_or_before(evals: list[dict], t: float) -> dict | None:
    best = None
    for e in evals:
        if e["train_s"] <= t + 1e-6:
            best = e
    return best


def report(res: dict) -> str:
    ours = res["ours"]
    failed = {t: r for t, r in res.get("references", {}).items() if r.get("failed")}
    refs = {t: r for t, r in res.get("references", {}).items() if not r.get("failed")}
    L = []
    L.append(f"scale {res['scale']}: {ours['playlists']:,} playlists, {ours['tracks']:,} tracks, "
             f"{ours['edges']:,} train edges; dim {ours['model']['dim']}, {ours['model']['layers']} layers")
    L.append(f"machine: {res['machine']}")
    L.append("")
    L.append("| run | processes x threads | batch (global) | lr | steps/epoch | s/step | s/epoch | peak RSS / process |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    spe = ours["seconds_per_epoch"]
    sps = ours["seconds_per_step"]
    peaks = ", ".join(f"{r['maxrss_mib']:,.0f} MiB" for r in ours["ranks"]) or "n/a"
    L.append(f"| ours{' (cut: %d of %d steps per epoch)' % (ours['steps_run_per_epoch'], ours['steps_per_epoch']) if ours['extrapolated'] else ''} "
             f"| {ours['world_size']} x {ours['omp_num_threads']} | {ours['batch_size']:,} ({ours['global_batch']:,}) "
             f"| {ours['train']['lr']} | {ours['steps_per_epoch']} | {sum(sps) / len(sps):.2f} "
             f"| {sum(spe) / len(spe):,.1f}{' (extrapolated)' if ours['extrapolated'] else ''} | {peaks} |")
    for tag, r in refs.items():
        L.append(f"| reference [{tag}]: PyG example, {r['adj']}{', decomposed_layers=%d' % r['decomposed_layers'] if r['decomposed_layers'] > 1 else ''} "
                 f"| 1 x {r['threads']} | {r['batch']:,} | {r['lr']} | {r['steps_per_epoch']} | {r['mean_step_s']:.2f} "
                 f"| {r['seconds_per_epoch']:,.1f}{' (extrapolated from %d steps)' % r['steps'] if r['extrapolated'] else ''} "
                 f"| {r['maxrss_mib']:,.0f} MiB |")
    for tag, r in failed.items():
        L.append(f"| reference [{tag}] | FAILED (rc {r['rc']}), see {r['log']} | | | | | | {r['polled_peak_rss_mib']:,.0f} MiB polled |")
    L.append("")
    ours_epoch = sum(spe) / len(spe)
    for tag, r in refs.items():
        ratio = r["seconds_per_epoch"] / ours_epoch
        L.append(f"per-epoch speed-up of ours over reference [{tag}]: {ratio:.1f}x (target >= 20x)")
    L.append("")
    L.append("Validation NDCG (same harness: musicmap.train.validate.validate on the same cases)")
    L.append("| ours epoch | ours train s (cum.) | ours NDCG | " + " | ".join(
        f"ref [{t}] NDCG at same train s (steps, epochs)" for t in refs) + " |")
    L.append("| --- | --- | --- | " + " | ".join("---" for _ in refs) + " |")
    for i, h in enumerate(ours["history"]):
        t = ours["train_seconds_cum"][i]
        cells = []
        for r in refs.values():
            e = [x for x in r["evals"] if x.get("at_train_s") is not None and abs(x["at_train_s"] - t) < 0.05]
            e = e[0] if e else None
            cells.append(f"{e['ndcg']:.4f} ({e['step']}, {e['epochs']:.3f})" if e else "-")
        v = h.get("val", {}).get("ndcg")
        L.append(f"| {h['epoch']} | {t:,.1f} | {v:.4f} | " + " | ".join(cells) + " |")
    for tag, r in refs.items():
        ep = [x for x in r["evals"] if x.get("at_epoch")]
        if ep:
            L.append("")
            L.append(f"reference [{tag}] at equal epochs: " + "; ".join(
                f"epoch {x['at_epoch']}: NDCG {x['ndcg']:.4f} after {x['train_s']:,.1f} train s" for x in ep))
            on = {h["epoch"]: h.get("val", {}).get("ndcg") for h in ours["history"]}
            L.append("ours at equal epochs: " + "; ".join(
                f"epoch {x['at_epoch']}: NDCG {on[x['at_epoch']]:.4f}" for x in ep if on.get(x["at_epoch"]) is not None))
    return "\n".join(L)


# =============================================================================== main
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_trainer":
        exit_without_teardown(trainer_entry(argv[1:]))  # see its docstring
    if argv and argv[0] == "_reference":
        return reference_entry(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=["seed", "small", "tiny"], default="small")
    ap.add_argument("--root", help="storage root (default bench/out/<scale>); the graph is generated if missing")
    ap.add_argument("--regen", action="store_true", help="regenerate the graph")
    ap.add_argument("--epochs", type=int, default=3, help="our epochs")
    ap.add_argument("--max-steps", type=int, default=0, help="cut each of our epochs to this many steps (0: full)")
    ap.add_argument("--nproc", type=int, default=2, help="our processes (torchrun --nproc_per_node)")
    ap.add_argument("--threads", type=int, help="OMP threads per process for ours (default: 1 under torchrun)")
    ap.add_argument("--device", default="cpu", help="our train.device (cpu, cuda)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config overrides for our run (existing keys of conf/default.yaml)")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--ref-device", default="cpu")
    ap.add_argument("--ref-threads", default="2", help="comma list: one reference run per value")
    ap.add_argument("--ref-epochs", type=int, default=0, help="reference full epochs (equal-epochs NDCG)")
    ap.add_argument("--ref-min-steps", type=int, default=0, help="reference steps at least (timing)")
    ap.add_argument("--ref-max-steps", type=int, default=0, help="reference steps at most (0: no cap)")
    ap.add_argument("--ref-decomposed-layers", type=int, default=1,
                    help="PyG decomposed_layers for the reference (1 = the example; >1 chunks the "
                         "E x 64 messages to bound memory)")
    ap.add_argument("--ref-mem-limit-gb", type=float, default=0.0,
                    help="address-space limit of the reference process (RLIMIT_AS; 0 = none)")
    ap.add_argument("--ref-adj", default="edge_index",
                    help="comma list of reference runs: edge_index or csr, each optionally :D for "
                         "decomposed_layers D (e.g. csr,edge_index:4)")
    ap.add_argument("--out", help="result JSON (default <root>/bench_train.json)")
    a = ap.parse_args(argv)

    root = a.root or str(REPO / "bench" / "out" / a.scale)
    out_dir = Path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    if a.regen or not storage.exists(storage.join(root, "graph", "_SUCCESS")):
        s = graphgen.SCALES[a.scale]
        print(f"$ python -m bench.graphgen --root {root} --scale {a.scale}", flush=True)
        graphgen.generate(root, s["playlists"], s["tracks"], s["edges"], s["val"], s["test"])
    res = {"scale": a.scale, "root": root, "machine": machine(), "argv": argv,
           "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    ours = run_ours(root, out_dir, a.nproc, a.epochs, a.max_steps, a.device, a.sets, a.threads)
    res["ours"] = ours
    print(f"ours: {ours['seconds_per_epoch']} s/epoch, NDCG {ours['val_ndcg']}, ranks {ours['ranks']}", flush=True)
    out = Path(a.out) if a.out else out_dir / "bench_train.json"
    out.write_text(json.dumps(res, indent=1, default=str))   # partial results
    if not a.skip_reference:
        res["references"] = {}
        budget = ours["train_seconds_cum"][-1]
        threads = [int(x) for x in str(a.ref_threads).split(",")]
        for spec, th in [(spec, th) for spec in a.ref_adj.split(",") for th in threads]:
            adj, _, d = spec.partition(":")
            d = int(d or a.ref_decomposed_layers)
            tag = f"{adj}-t{th}" + ("" if d == 1 else f"-d{d}")
            r = run_reference(root, out_dir, th, a.ref_device, budget, ours["train_seconds_cum"],
                              a.ref_epochs, a.ref_min_steps, a.ref_max_steps, d, adj, tag,
                              a.ref_mem_limit_gb)
            res["references"][tag] = r
            if not r.get("failed"):
                print(f"reference [{tag}]: {r['seconds_per_epoch']:.1f} s/epoch ({r['steps']} steps), "
                      f"peak {r['maxrss_mib']} MiB", flush=True)
            out.write_text(json.dumps(res, indent=1, default=str))   # partial results
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    text = report(res) if not a.skip_reference else report({**res, "references": {}})
    res["table"] = text
    out.write_text(json.dumps(res, indent=1, default=str))
    print()
    print(text)
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
