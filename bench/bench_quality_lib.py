"""Variants bench_quality.py scores in the project's harness beside what `musicmap evaluate`
reports: LightGCN alone with each fold-in mode, and the transductive mode (the cases' seeds as
extra playlist nodes of the training graph)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from musicmap import metrics, mpd, schemas, storage
from musicmap.cases import load_eval
from musicmap.config import load_config
from musicmap.graph import load_tracks, uri_index
from musicmap.recommend.context import load_context
from musicmap.recommend.recommenders import LightGCNRecommender
from musicmap.tools.evaluate import score
from musicmap.topk import topk
from musicmap.train.export import load_model
from musicmap.train.foldin import FOLDIN_MODES, FoldIn

REPO = Path(__file__).resolve().parents[1]
GROUPS = {"title-only": ["title_only"],
          "1-10 seeds": ["title_first1", "title_first5", "first5", "title_first10", "first10"],
          "25-100 seeds": ["title_first25", "title_random25", "title_first100", "title_random100"],
          "1 seed": ["title_first1"]}
METRICS = ("ndcg", "r_precision", "clicks")


def summarise(report: dict) -> dict:
    """Per method: NDCG / R-precision / clicks overall (challenge categories), per group, on the
    seed protocol, and on the graph playlists' held-out tracks."""
    out = {}
    for m, r in report["methods"].items():
        ch = r["challenge"]
        row = {"all": {k: ch["all"][k] for k in METRICS},
               "seed_protocol": {k: r["seed_protocol"][k] for k in METRICS}}
        for g, cats in GROUPS.items():
            n = sum(ch[c]["cases"] for c in cats if c in ch)
            if n:
                row[g] = {k: sum(ch[c][k] * ch[c]["cases"] for c in cats if c in ch) / n for k in METRICS}
        out[m] = row
    for m, r in ((report.get("graph_playlists") or {}).get("methods") or {}).items():
        out.setdefault(f"graph: {m}", {})["all"] = {k: r[k] for k in METRICS}
    return out


def report_of(ranked: dict, cases, ctx, k: int = 500) -> dict:
    """An evaluate-style report ({"methods": {name: {"challenge", "seed_protocol"}}})."""
    artists = ctx.tracks["artist_uri"].to_pylist()
    artist_id = {a: i for i, a in enumerate(dict.fromkeys(artists))}
    artist_of = np.array([artist_id[a] for a in artists], np.int64)
    protocol = [c == mpd.SEED_PROTOCOL for c in cases.category]
    ch = [i for i, s in enumerate(protocol) if not s]
    sp = [i for i, s in enumerate(protocol) if s]
    out = {}
    for name, r in ranked.items():
        rows = score(r, cases, artist_of, artist_id, k, 20)
        out[name] = {"challenge": metrics.aggregate([rows[i] for i in ch], [cases.category[i] for i in ch]),
                     "seed_protocol": metrics.aggregate([rows[i] for i in sp])["all"]}
    return {"methods": out}


def score_foldins(root: Path, config: str | None) -> dict:
    cfg = load_config(config, root=str(root))
    ctx = load_context(cfg, ranker=False)
    cases = load_eval(ctx.committed, "test", uri_index(ctx.tracks))
    ranked = {m: LightGCNRecommender(ctx.model, ctx.title_model, FoldIn.from_config(cfg.recommend).with_mode(m))
              .rank(cases.seeds, cases.name, 500)[0] for m in FOLDIN_MODES}
    return summarise(report_of(ranked, cases, ctx))


def transductive_graph(root: Path, protocol: str, out: Path) -> tuple[dict, int]:
    """A committed copy of root/graph whose train graph also holds, as playlist nodes, the seeds
    of the val and test cases of one protocol ("challenge" or "seed_protocol"). Returns
    {(pid, category): node} and the number of original graph playlists."""
    g = storage.open_committed(str(root / "graph"))
    index = uri_index(load_tracks(g, ["track_idx", "track_uri"]))
    P = int(g.info["graph_playlists"])
    nodes, rows = {}, []
    for split in ("val", "test"):
        cases = load_eval(g, split, index)
        for i in range(len(cases)):
            if (cases.category[i] == mpd.SEED_PROTOCOL) != (protocol == "seed_protocol") or not len(cases.seeds[i]):
                continue
            node = P + len(nodes)
            nodes[(int(cases.pid[i]), cases.category[i])] = node
            rows += [(node, int(t), j) for j, t in enumerate(cases.seeds[i])]
    if out.exists():
        shutil.rmtree(out)
    w = storage.StageWriter(str(out))
    src = Path(g.path())
    for sub in ("tracks", "playlists", "eval", "edges"):
        shutil.copytree(src / sub, Path(w.path(sub)))
    extra = pa.table({"playlist_idx": pa.array([r[0] for r in rows], pa.int32()),
                      "track_idx": pa.array([r[1] for r in rows], pa.int32()),
                      "pos": pa.array([min(r[2], 32767) for r in rows], pa.int16()),
                      "weight": pa.array(np.ones(len(rows), np.float32))}, schema=schemas.EDGES)
    storage.write_parquet(extra, w.path("edges", "part-transductive.parquet"))
    info = {k: v for k, v in g.info.items() if k not in ("version", "committed_at")}
    info["graph_playlists"] = P + len(nodes)
    info["edges"] = int(g.info["edges"]) + len(rows)
    w.commit(info)
    return nodes, P


def transductive_scores(root: Path, config: str | None, random_seed: int) -> dict:
    """Test scores of the transductive mode, one graph and one trained model per protocol."""
    cfg = load_config(config, root=str(root))
    ctx = load_context(cfg, ranker=False)
    cases = load_eval(ctx.committed, "test", uri_index(ctx.tracks))
    ranked = np.full((len(cases), 500), -1, np.int64)
    for protocol in ("challenge", "seed_protocol"):
        troot = root / f"transductive-{protocol}"
        nodes, P = transductive_graph(root, protocol, troot / "graph")
        cmd = [sys.executable, "-m", "musicmap.cli", "-q", "train", "--root", str(troot), "--nproc", "2",
               "--set", f"train.random_seed={random_seed}", "--set", "train.progress=false"] + (["--config", config] if config else [])
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env=dict(os.environ))
        m = load_model(str(troot / "model"))
        tracks = torch.from_numpy(m.tracks)
        mine = [i for i in range(len(cases)) if (cases.category[i] == mpd.SEED_PROTOCOL) == (protocol == "seed_protocol")]
        with_node = [i for i in mine if (int(cases.pid[i]), cases.category[i]) in nodes]
        q = torch.from_numpy(m.playlists[[nodes[(int(cases.pid[i]), cases.category[i])] for i in with_node]])
        r, _ = topk(q, tracks, 500, exclude=[cases.seeds[i] for i in with_node])
        ranked[with_node] = r
        cold = [i for i in mine if i not in set(with_node)]
        if cold:
            ranked[cold] = ctx.title_model.rank([cases.seeds[i] for i in cold], [cases.name[i] for i in cold], 500)[0]
    return summarise(report_of({"transductive": ranked}, cases, ctx))["transductive"]
