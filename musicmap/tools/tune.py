"""A bounded search over the knobs that matter, scored on validation only.

    musicmap tune --root URI [--trials 12] [--set tune.space.model.dim=[32,64]]

Trial 0 is the current config; the others draw one value per key of `tune.space` (seeded). Each
trial trains as `musicmap train` does (train/main.py with the trial's settings, its model in a
scratch folder) and is scored by the validation NDCG of its best fold-in mode over every
validation case (challenge categories and seed protocol). The ranker settings of
`tune.ranker_space` are then cross-validated on the best trial's model (`musicmap fit-ranker`).
Test cases are never read.

Writes <root>/tune/<version>/best.yaml (the keys that differ from the config it started from:
pass it to any command with --config), report.json and report.md; the trials' models are
deleted unless tune.keep_trials.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time

import numpy as np
import yaml

from musicmap import storage
from musicmap.config import config_from_args
from musicmap.distributed import FRESH_STORE_ENV
from musicmap.errors import MusicMapError
from musicmap.log import get_logger

log = get_logger("tune")


def flat_space(space) -> dict[str, list]:
    """{"model.dim": [32, 64], ...} from the nested tune.space section."""
    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from walk(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", list(v)
    return dict(walk(space.to_dict() if hasattr(space, "to_dict") else space))


def draw_trials(space: dict[str, list], n: int, random_seed: int) -> list[dict]:
    """Trial 0 = {} (the config as is), then up to n - 1 distinct random points of the grid."""
    keys = sorted(space)
    grid = list(itertools.product(*(space[k] for k in keys)))
    rng = np.random.default_rng([random_seed, 5])
    picks = rng.permutation(len(grid))[:max(n - 1, 0)]
    return [{}] + [dict(zip(keys, grid[i])) for i in sorted(picks)]


def _overrides(point: dict) -> list[str]:
    out = []
    for k, v in point.items():
        out += ["--set", f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"]
    return out


def _base_args(args) -> list[str]:
    out = []
    if args.config:
        out += ["--config", args.config]
    if args.root:
        out += ["--root", args.root]
    for o in args.overrides:
        out += ["--set", o]
    return out


def run_trial(args, point: dict, folder: str, nproc: int) -> dict:
    """Train one trial into `folder`; its validation scores (best over fold-in modes)."""
    t0 = time.time()
    sets = _overrides(point) + ["--set", f"paths.model={folder}", "--set", "train.progress=false"]
    cmd = [sys.executable, "-m", "musicmap.cli", "-q", "train", *_base_args(args), *sets, "--nproc", str(nproc)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **FRESH_STORE_ENV))
    if p.returncode:
        return {"point": point, "error": (p.stderr or p.stdout).strip().splitlines()[-1:], "seconds": round(time.time() - t0, 1)}
    m = storage.read_json(storage.open_committed(folder).path("manifest.json"))
    val = m["foldin"]["val"]
    best_mode = max(val, key=lambda k: val[k]["ndcg"])
    return {"point": point, "ndcg": val[best_mode]["ndcg"], "r_precision": val[best_mode]["r_precision"],
            "foldin": best_mode, "best_epoch": m["best"]["epoch"], "seconds": round(time.time() - t0, 1),
            "model": folder}


def run_ranker_trial(args, point: dict, model: str, folder: str) -> dict:
    t0 = time.time()
    cmd = [sys.executable, "-m", "musicmap.cli", "-q", "fit-ranker", *_base_args(args), *_overrides(point),
           "--set", f"paths.model={model}", "--set", f"paths.ranker={folder}", "--set", "train.progress=false"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        return {"point": point, "error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
    m = storage.read_json(storage.open_committed(folder).path("manifest.json"))
    r = m["cross_validation"]["methods"]["ranker"]["all"]
    return {"point": point, "ndcg": r["ndcg"], "r_precision": r["r_precision"], "seconds": round(time.time() - t0, 1)}


def search(args, cfg) -> dict:
    tune_cfg = cfg.tune
    scratch = storage.join(storage.stage_uri(cfg, "tune"), "trials")
    deadline = time.time() + 60 * tune_cfg.max_minutes if tune_cfg.max_minutes else float("inf")
    trials = []
    for i, point in enumerate(draw_trials(flat_space(tune_cfg.space), tune_cfg.trials, tune_cfg.random_seed)):
        if time.time() > deadline:
            log.info("tune.max_minutes reached after %d trials", i)
            break
        res = run_trial(args, point, storage.join(scratch, f"model-{i:03d}"), tune_cfg.nproc)
        trials.append(res)
        log.info("trial %d %s: %s", i, point or "(config as is)",
                 f"val NDCG {res['ndcg']:.4f} ({res['foldin']} fold-in, best epoch {res['best_epoch']}, "
                 f"{res['seconds']:.0f}s)" if "ndcg" in res else f"failed: {res['error']}")
    done = [t for t in trials if "ndcg" in t]
    if not done:
        raise MusicMapError("tune: every trial failed; see the log above")
    best = max(done, key=lambda t: t["ndcg"])
    rankers = []
    for j, point in enumerate(draw_trials(flat_space(tune_cfg.ranker_space), tune_cfg.ranker_trials, tune_cfg.random_seed)):
        if time.time() > deadline:
            break
        res = run_ranker_trial(args, point, best["model"], storage.join(scratch, f"ranker-{j:03d}"))
        rankers.append(res)
        log.info("ranker trial %d %s: %s", j, point or "(config as is)",
                 f"cross-validated NDCG {res['ndcg']:.4f}" if "ndcg" in res else f"failed: {res['error']}")
    best_ranker = max((r for r in rankers if "ndcg" in r), key=lambda r: r["ndcg"], default={"point": {}})
    return {"trials": trials, "best": best, "rankers": rankers, "best_ranker": best_ranker}


def nested(point: dict) -> dict:
    out: dict = {}
    for k, v in point.items():
        node = out
        *parents, leaf = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def report_md(res: dict) -> str:
    lines = ["| trial | settings | val NDCG | val R-prec | fold-in | best epoch | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for i, t in sorted(enumerate(res["trials"]), key=lambda it: -it[1].get("ndcg", -1)):
        s = ", ".join(f"{k}={v}" for k, v in t["point"].items()) or "(config as is)"
        if "ndcg" in t:
            lines.append(f"| {i} | {s} | {t['ndcg']:.4f} | {t['r_precision']:.4f} | {t['foldin']} | "
                         f"{t['best_epoch']} | {t['seconds']:.0f} |")
        else:
            lines.append(f"| {i} | {s} | failed: {t['error']} | | | | |")
    if res["rankers"]:
        lines += ["", "| ranker trial | settings | cross-validated NDCG | R-prec |", "| --- | --- | --- | --- |"]
        for j, r in sorted(enumerate(res["rankers"]), key=lambda it: -it[1].get("ndcg", -1)):
            s = ", ".join(f"{k}={v}" for k, v in r["point"].items()) or "(config as is)"
            lines.append(f"| {j} | {s} | {r.get('ndcg', float('nan')):.4f} | {r.get('r_precision', float('nan')):.4f} |")
    return "\n".join(lines)


def run(args, cfg) -> dict:
    t0 = time.time()
    graph = storage.open_committed(storage.stage_uri(cfg, "graph"), "build-graph")   # the trials' input
    res = search(args, cfg)
    best = {**res["best"]["point"], **res["best_ranker"]["point"]}
    out = storage.StageWriter(storage.stage_uri(cfg, "tune"))
    storage.write_bytes(out.path("best.yaml"), (
        "# musicmap tune: the best settings on validation (only what differs from the starting config)\n"
        + yaml.safe_dump(nested(best), sort_keys=True)).encode())
    storage.write_json(out.path("report.json"), {**res, "seconds": round(time.time() - t0, 1),
                                                 "input": {"graph_version": graph.version}})
    storage.write_bytes(out.path("report.md"), report_md(res).encode())
    if not cfg.tune.keep_trials:
        storage.remove(storage.join(storage.stage_uri(cfg, "tune"), "trials"))
    marker = out.commit({"stage": "tune", "best_ndcg": res["best"]["ndcg"]})
    return {**res, "out": out.uri, "version": marker["version"], "best_trial": res["best"], "best": best}


def add_arguments(p) -> None:
    p.add_argument("--trials", type=int, help="LightGCN trials, the config as is included (tune.trials)")
    p.add_argument("--nproc", type=int, help="processes per trial (tune.nproc)")


def run_cli(args) -> int:
    extra = [f"tune.{k}={v}" for k, v in (("trials", args.trials), ("nproc", args.nproc)) if v is not None]
    cfg = config_from_args(args, extra)
    args.overrides = [*args.overrides, *extra]
    storage.open_committed(storage.stage_uri(cfg, "graph"), "build-graph")
    res = run(args, cfg)
    print(report_md(res))
    print(f"best settings: {res['best'] or '(the config as is)'} -> {res['out']}/{res['version']}/best.yaml")
    return 0
