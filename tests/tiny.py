"""A tiny in-memory world for fast tests of the recommend side: a train graph whose rare tracks are
known, a trained model that embeds only the popular ones, and the Context the commands read
(nothing on storage, no Spark, no torchrun).

    p0 {t0 t1 t2 t3}   p1 {t0 t1 t2 t4}   p2 {t0 t1 t3 t5}   p3 {t0 t2 t4 t5}
    p4 {t1 t3 t4 t5 t6}   p5 {t0 t1 t2 t7}   p6 {t6 t8 t9}   p7 {t0 t10 t11}

Train playlists per track: t0 6, t1 5, t2 4, t3-t5 3, t6 2, t7-t11 1 (track ids follow the count,
as build-graph gives them). LightGCN embeds the tracks in 3 or more playlists, t0-t5
(model.embed_min_playlists = 3); p6 holds none of them.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from musicmap import schemas, storage
from musicmap.config import load_config
from musicmap.graph import Graph
from musicmap.recommend.context import Context
from musicmap.recommend.recommenders import TitleModel
from musicmap.train.export import TrainedModel

PLAYLISTS = [[0, 1, 2, 3], [0, 1, 2, 4], [0, 1, 3, 5], [0, 2, 4, 5], [1, 3, 4, 5, 6], [0, 1, 2, 7], [6, 8, 9],
             [0, 10, 11]]
TITLES = ["rock", "rock", "chill", "chill", "road trip", "rock", "deep cuts", "mix"]
T, EMBEDDED, DIM = 12, 6, 4
RARE_ONLY = 6                       # the graph playlist without an embedded track


def graph() -> Graph:
    pl = np.repeat(np.arange(len(PLAYLISTS)), [len(p) for p in PLAYLISTS])
    tr = np.concatenate(PLAYLISTS)
    return Graph(len(PLAYLISTS), T, pl, tr, np.ones(len(tr), np.float32), "v-tiny")


def model(random_seed: int = 0) -> TrainedModel:
    rng = np.random.default_rng(random_seed)
    vec = lambda n: rng.standard_normal((n, DIM)).astype(np.float32)  # noqa: E731
    return TrainedModel(vec(len(PLAYLISTS)), vec(EMBEDDED), vec(EMBEDDED),
                        {"foldin": {"chosen": "lightgcn"}, "best": {"epoch": 1}}, "v-model")


def tracks_table() -> pa.Table:
    counts = np.bincount(np.concatenate(PLAYLISTS), minlength=T)
    cols = {"track_idx": np.arange(T), "track_uri": [f"spotify:track:t{i}" for i in range(T)],
            "track_name": [f"song {i}" for i in range(T)], "artist_uri": [f"spotify:artist:a{i % 3}" for i in range(T)],
            "artist_name": [f"artist {i % 3}" for i in range(T)], "album_uri": [f"spotify:album:b{i % 4}" for i in range(T)],
            "album_name": [f"album {i % 4}" for i in range(T)], "duration_ms": [200_000] * T,
            "train_playlists": counts}
    return pa.table(cols, schema=schemas.TRACKS)


def playlists_table() -> pa.Table:
    n = len(PLAYLISTS)
    return pa.table({"playlist_idx": np.arange(n), "pid": np.arange(100, 100 + n), "name": TITLES,
                     "modified_at": 1_400_000_000 + 1000 * np.arange(n), "num_followers": [1] * n,
                     "num_edits": [1] * n, "num_tracks": [len(p) for p in PLAYLISTS], "split": ["train"] * n},
                    schema=schemas.PLAYLISTS)


def context(*overrides: str) -> Context:
    """The Context of the tiny world (LightGCN alone serves: no ranker)."""
    cfg = load_config(overrides=["model.embed_min_playlists=3", "recommend.device=cpu", *overrides])
    g, pl = graph(), playlists_table()
    return Context(cfg, g, storage.Committed("memory://tiny/graph", "v-tiny", {}), tracks_table(), pl, pl,
                   model(), TitleModel(TITLES).fit(g))
