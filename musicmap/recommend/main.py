"""Batch top-K recommendations for every playlist of a set, and a challenge submission.

    musicmap recommend --root URI [--k 500] [--playlists train|val|test|all|none] [--challenge FILE]
                       [--nproc N]
    torchrun --nproc_per_node=N recommend/main.py --root URI ...   (playlists sharded over ranks)

train: graph playlists, scored with their propagated embeddings, minus their own tracks.
val/test: every evaluation case of the split, scored from its seeds by the served recommender
(recommend.context), never a seed. A playlist may have two cases, its challenge category and the
seed protocol.
--challenge FILE: a challenge_set.json; writes recs/<version>/submission.csv.gz and validates it.

Output (committed atomically): recs/<version>/part-*.parquet (schemas.RECS) and summary.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from musicmap import distributed, schemas, storage, submission
from musicmap.cases import SPLITS as GRAPH_SPLITS
from musicmap.config import add_config_args, config_from_args
from musicmap.distributed import run_worker, torchrun_command
from musicmap.errors import MusicMapError
from musicmap.graph import uri_index
from musicmap.log import get_logger, progress, setup_logging
from musicmap.recommend.context import Context, load_context
from musicmap.recommend.graph_playlists import rank_graph_playlists

log = get_logger("recommend")
ROWS_PER_PART = 2_000_000


def _rows(pids, categories, ranked, scores, uris: pa.Array) -> pa.Table:
    """RECS rows of a block of ranked lists (-1 padding dropped)."""
    n, k = ranked.shape
    valid = ranked >= 0
    counts = valid.sum(1)
    flat = ranked[valid]
    names, codes = np.unique(np.asarray(categories, dtype=object).astype(str), return_inverse=True)
    return pa.table({
        "pid": pa.array(np.repeat(pids, counts), pa.int64()),
        "category": pc.take(pa.array(names.tolist(), pa.string()),
                            pa.array(np.repeat(codes.astype(np.int32), counts))),
        "rank": pa.array(np.broadcast_to(np.arange(1, k + 1, dtype=np.int16), (n, k))[valid], pa.int16()),
        "track_uri": pc.take(uris, pa.array(flat)),
        "score": pa.array(scores[valid].astype(np.float32), pa.float32()),
    }, schema=schemas.RECS)


# Part files by what their rows are, so a reader opens only what it scores (evaluate reads the
# cases and the graph playlists under evaluation, never the MPD's ~1M graph playlists' lists):
# part-<kind>-<rank>-<n>.parquet. Every part together is the whole output.
PART_KINDS = ("train", "graphcases", "cases", "challenge")


class PartWriter:
    """Buffers RECS rows and writes part files of about ROWS_PER_PART rows, one stream per kind
    (PART_KINDS)."""

    def __init__(self, out: storage.StageWriter, rank: int):
        self.out, self.rank, self.rows = out, rank, 0
        self.buf = {k: [] for k in PART_KINDS}
        self.n, self.parts = dict.fromkeys(PART_KINDS, 0), dict.fromkeys(PART_KINDS, 0)

    def add(self, table: pa.Table, kind: str) -> None:
        self.buf[kind].append(table)
        self.n[kind] += table.num_rows
        if self.n[kind] >= ROWS_PER_PART:
            self.flush(kind)

    def flush(self, kind: str | None = None) -> None:
        for k in [kind] if kind else PART_KINDS:
            if self.buf[k]:
                t = pa.concat_tables(self.buf[k])
                storage.write_parquet(t, self.out.path(f"part-{k}-{self.rank:03d}-{self.parts[k]:05d}.parquet"))
                self.parts[k] += 1
                self.rows += t.num_rows
                self.buf[k], self.n[k] = [], 0


def recommend_train(ctx: Context, idx: np.ndarray, k: int, writer: PartWriter, show: bool) -> int:
    """Graph playlists `idx`, by ctx.graph_method() (the ranker is fitted and cross-validated on
    new playlists, never on graph playlists, whose embeddings were trained on their own tracks;
    and for the MPD's 800,000 graph playlists it would cost many times LightGCN's or an item-based
    method's time: bench/BENCHMARKS.md)."""
    pid = ctx.train_playlists["pid"].to_numpy()
    method = ctx.graph_method()
    scored = np.isin(pid, np.concatenate([ctx.cases(s).pid for s in GRAPH_SPLITS]))   # under evaluation
    block = max(ctx.cfg.recommend.chunk, 4096)
    for lo in progress(range(0, len(idx), block), desc=f"recommend train ({method})", unit="block",
                       disable=not show):
        b = idx[lo:lo + block]
        ranked, scores = rank_graph_playlists(ctx, b, k, method)
        for kind, rows in (("train", ~scored[b]), ("graphcases", scored[b])):
            if rows.any():
                writer.add(_rows(pid[b][rows], ["train"] * int(rows.sum()), ranked[rows], scores[rows], ctx.uris), kind)
    return len(idx)


def recommend_cases(ctx: Context, split: str, k: int, rank: int, world: int, writer: PartWriter,
                    show: bool) -> tuple[int, dict]:
    """This rank's share of the split's cases (the evaluate.max_playlists sample): how many, and
    how many playlists of how many were drawn."""
    cases = ctx.cases(split)
    if cases.drawn and show:
        log.info("%s: the cases of %d of its %d playlists (evaluate.max_playlists)", split, *cases.drawn)
    mine = cases.subset(range(rank, len(cases), world))
    rec = ctx.recommender()
    block = 512
    for lo in progress(range(0, len(mine), block), desc=f"recommend {split}", unit="block", disable=not show):
        part = mine.subset(range(lo, min(lo + block, len(mine))))
        ranked, scores = rec.rank(part.seeds, part.name, k)
        writer.add(_rows(part.pid, part.category, ranked, scores, ctx.uris), "cases")
    drawn = cases.drawn or (len(np.unique(cases.pid)),) * 2
    return len(mine), {"cases": len(cases), "playlists_drawn": drawn[0], "playlists": drawn[1]}


def recommend_challenge(ctx: Context, challenge: list[dict], out: storage.StageWriter, writer: PartWriter) -> dict:
    index = uri_index(ctx.tracks)
    seeds, dropped = [], 0
    for p in challenge:
        s = [index[u] for u in p["seeds"] if u in index]
        dropped += len(p["seeds"]) - len(s)
        seeds.append(np.unique(np.array(s, np.int64)))
    k = submission.SUBMISSION_SIZE
    ranked, scores = ctx.recommender().rank(seeds, [p["name"] for p in challenge], k)
    pids = np.array([p["pid"] for p in challenge], np.int64)
    writer.add(_rows(pids, ["challenge"] * len(pids), ranked, scores, ctx.uris), "challenge")
    uris = ctx.uris.to_numpy(zero_copy_only=False)
    rows = [(int(pid), uris[r[r >= 0]].tolist()) for pid, r in zip(pids, ranked)]
    sub_uri = out.path("submission.csv.gz")
    submission.write_submission(sub_uri, ctx.cfg.recommend.team_name, ctx.cfg.recommend.contact, rows)
    problems = submission.validate_submission(sub_uri, challenge)
    if problems:
        log.warning("submission %s fails %d checks, e.g. %s", sub_uri, len(problems), problems[0])
    return {"playlists": len(challenge), "oov_seeds": dropped, "valid": not problems,
            "problems": problems[:10], "file": "submission.csv.gz"}


def run(cfg, which: str, challenge: str | None = None, rank: int = 0, world: int = 1,
        version: str | None = None, force: bool = False) -> dict:
    """Write this rank's share of the recommendations; rank 0 commits when all are done."""
    t0 = time.time()
    # a malformed challenge set stops the job before any work (and nothing is committed)
    challenge_set = submission.read_challenge(challenge) if challenge and rank == 0 else None
    ctx = load_context(cfg, force=force)
    k = cfg.recommend.k
    out = storage.StageWriter(storage.stage_uri(cfg, "recs"), version)
    writer = PartWriter(out, rank)
    show = rank == 0
    counts, drawn = {}, {}
    if which in ("train", "all"):
        idx = np.arange(ctx.graph.num_playlists)[rank::world]
        counts["train"] = recommend_train(ctx, idx, k, writer, show)
    for split in ("val", "test"):
        if which in (split, "all"):
            counts[split], drawn[split] = recommend_cases(ctx, split, k, rank, world, writer, show)
    summary = {}
    if challenge_set is not None:
        summary["challenge"] = recommend_challenge(ctx, challenge_set, out, writer)
    writer.flush()
    summary.update({"k": k, "playlists": which, "cases": drawn, "cases_by_rank": {rank: counts},
                    "rows_by_rank": {rank: writer.rows},
                    "method": ctx.method, "graph_playlists_method": ctx.graph_method(), "foldin": ctx.foldin_spec().mode,
                    "ranker_version": (ctx.ranker_manifest or {}).get("version"),
                    "model_version": ctx.model.version, "graph_version": ctx.committed.version,
                    "seconds": round(time.time() - t0, 2)})
    return {"out": out, "summary": summary}


def commit(out: storage.StageWriter, summaries: list[dict]) -> dict:
    s = dict(summaries[0])
    for other in summaries[1:]:
        s["cases_by_rank"].update(other["cases_by_rank"])
        s["rows_by_rank"].update(other["rows_by_rank"])
    s["rows"] = sum(s["rows_by_rank"].values())
    storage.write_json(out.path("summary.json"), s)
    out.commit({"stage": "recs", "rows": s["rows"], "model_version": s["model_version"]})
    return s


def add_arguments(p) -> None:
    p.add_argument("--k", type=int, help="recommendations per playlist (recommend.k)")
    p.add_argument("--playlists", help="train, val, test, all or none (recommend.playlists)")
    p.add_argument("--challenge", metavar="FILE", help="challenge_set.json to answer (submission.csv.gz)")
    p.add_argument("--nproc", type=int, default=1, help="processes (torchrun), playlists sharded over them")
    p.add_argument("--force", action="store_true",
                   help="with recommend.method=auto and a ranker fitted on another model, serve LightGCN "
                        "alone instead of stopping")


def _extra(args) -> list[str]:
    return [f"recommend.{k}={v}" for k, v in (("k", args.k), ("playlists", args.playlists)) if v is not None]


def print_summary(s: dict, out_uri: str) -> None:
    total = {}
    for c in s["cases_by_rank"].values():
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    served = ", ".join(f"{v:,} {k}" for k, v in total.items())
    if "challenge" in s:
        served = ", ".join(x for x in (served, f"{s['challenge']['playlists']:,} challenge playlists") if x)
    print(f"recommend ({s['method']}, fold-in {s['foldin']}): {s['rows']:,} rows (top {s['k']}) for "
          f"{served} -> {out_uri}")
    if "challenge" in s:
        c = s["challenge"]
        print(f"  challenge: {c['playlists']:,} playlists -> submission.csv.gz "
              f"({'passes the challenge checks' if c['valid'] else 'FAILS: ' + '; '.join(c['problems'][:3])})")


def run_cli(args) -> int:
    cfg = config_from_args(args, _extra(args))
    if args.nproc > 1:
        own = (["--challenge", args.challenge] if args.challenge else []) + (["--force"] if args.force else [])
        rc = subprocess.call(torchrun_command("musicmap.recommend.main", args, args.nproc, extra=_extra(args)) + own)
        if rc:
            raise MusicMapError(f"recommend failed (exit status {rc})")
        return 0
    res = run(cfg, cfg.recommend.playlists, args.challenge, force=args.force)
    s = commit(res["out"], [res["summary"]])
    print_summary(s, res["out"].uri)
    return 0


def main(argv=None) -> int:
    """torchrun entry: shards playlists over ranks; rank 0 commits."""
    parser = argparse.ArgumentParser(prog="recommend/main.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(rank=rank if ddp else None, quiet=rank != 0)
    cfg = config_from_args(args, _extra(args))
    if not ddp:
        res = run(cfg, cfg.recommend.playlists, args.challenge, force=args.force)
        print_summary(commit(res["out"], [res["summary"]]), res["out"].uri)
        return 0
    # coordination only (a version name, the summaries): CPU objects over gloo; scoring runs on
    # each rank's own device and never crosses ranks
    distributed.init("cpu", cfg.train.dist_timeout_s)
    world = int(os.environ["WORLD_SIZE"])
    version = distributed.broadcast(storage.new_version() if rank == 0 else None)
    if cfg.recommend.device == "auto" and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    res = run(cfg, cfg.recommend.playlists, args.challenge, rank, world, version, args.force)
    gathered = distributed.gather(res["summary"])
    if rank == 0:
        print_summary(commit(res["out"], gathered), res["out"].uri)
    distributed.barrier()  # the process group is left to exit_without_teardown
    return 0


if __name__ == "__main__":
    run_worker(main, "recommend")
