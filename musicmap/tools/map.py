"""`musicmap map`: the music map, a 2-D map of the catalogue the model learned, as a web page.

    musicmap map --root URI      -> <root>/map/<version>/{index.html, data.js, tracks.parquet, summary.json}

Open index.html in a browser (it works from the file system, offline) or serve the folder as
static files (`python -m http.server`, an object store's static website).

- Layout: UMAP (umap-learn) of every catalogue track's final embedding, cosine distance,
  seeded (map.random_seed). UMAP rather than t-SNE (openTSNE): it runs in time roughly linear in the
  tracks and keeps more of the global arrangement (which kinds of music border which), which
  is what a map is for; bench/BENCHMARKS.md has its cost.
- Regions: k-means on the layout; each is labelled by its most frequent artists (playlist
  occurrences of their tracks in the region) and the words of the playlist titles whose tracks
  fall there, the most distinctive first (frequent in the region, rare elsewhere).
- Neighbours: each track's nearest tracks exactly as `musicmap similar` lists them.
- Vectors: the tracks' final and fold-in embeddings, so that the page folds several seeds into
  a new playlist itself (LightGCN's propagation for a new node, train.foldin.seed_queries).
"""
from __future__ import annotations

import base64
import json
import time
import warnings
from importlib import resources

import numpy as np
import pyarrow as pa
import umap
from scipy import sparse
from sklearn.cluster import KMeans

from musicmap import schemas, storage
from musicmap.config import config_from_args
from musicmap.log import get_logger, progress
from musicmap.mpd import normalize_title
from musicmap.recommend.context import load_context
from musicmap.recommend.similar import recommender

log = get_logger("map")
NEIGHBOUR_CHUNK = 2048   # tracks per block of the neighbour lists (bounds memory)


def layout(vectors: np.ndarray, n_neighbors: int, min_dist: float, random_seed: int) -> np.ndarray:
    """(T, 2) float32 positions in [-1, 1] of (T, d) vectors; the same for the same seed."""
    T = len(vectors)
    if T < 4:   # UMAP needs a few points; a line is the honest map of fewer
        xy = np.stack([np.linspace(-1, 1, T), np.zeros(T)], 1) if T > 1 else np.zeros((T, 2))
        return xy.astype(np.float32)
    with warnings.catch_warnings():   # "n_jobs overridden to 1 by setting random_state": intended
        warnings.simplefilter("ignore", UserWarning)
        xy = umap.UMAP(n_neighbors=min(n_neighbors, T - 1), min_dist=min_dist, metric="cosine",
                       random_state=random_seed, init="spectral" if T > n_neighbors + 2 else "random",
                       ).fit_transform(vectors.astype(np.float32))
    xy = xy - (xy.max(0) + xy.min(0)) / 2
    return (xy / max(np.abs(xy).max(), 1e-9)).astype(np.float32)


def regions(xy: np.ndarray, n: int, random_seed: int) -> np.ndarray:
    """(T,) int16 region of each point, by k-means on the layout. n = 0 picks about one region
    per 50 points, clipped to 8-60. That is enough for a region to rarely span two kinds of
    music, and few enough to read."""
    T = len(xy)
    n = n or int(np.clip(round(T / 50), 8, 60))
    n = max(1, min(n, T))
    return KMeans(n_clusters=n, random_state=random_seed, n_init=3).fit_predict(xy).astype(np.int16)


def _title_words(names: list[str | None]) -> tuple[list[str], list[np.ndarray]]:
    """The vocabulary of title words and, per playlist, the ids of its distinct words."""
    vocab: dict[str, int] = {}
    ids = []
    for name in names:
        words = {w for w in normalize_title(name).split() if len(w) > 1 and not w.isdigit()}
        ids.append(np.array([vocab.setdefault(w, len(vocab)) for w in sorted(words)], np.int64))
    return list(vocab), ids


def region_labels(region: np.ndarray, tracks: pa.Table, graph, playlist_names: list[str | None],
                  n_artists: int, n_words: int) -> list[str]:
    """One label per region: 'word word word · artist, artist' (the title words say what kind of
    music it is; the artists say whose)."""
    R = int(region.max()) + 1 if len(region) else 0
    artists = tracks["artist_name"].to_pylist()
    pop = tracks["train_playlists"].to_numpy().astype(np.int64)
    words, word_ids = _title_words(playlist_names)
    # region x playlist: how many of a playlist's tracks lie in the region
    rp = sparse.csr_matrix((np.ones(len(graph.track)), (region[graph.track], graph.playlist)),
                           shape=(R, graph.num_playlists))
    lens = np.array([len(w) for w in word_ids])
    pw = sparse.csr_matrix((np.ones(lens.sum()), (np.repeat(np.arange(len(word_ids)), lens),
                                                  np.concatenate(word_ids) if lens.sum() else [])),
                           shape=(len(word_ids), len(words)))
    rw = np.asarray((rp @ pw).todense()) if len(words) else np.zeros((R, 0))
    share_all = (rw.sum(0) + 1) / (rw.sum() + len(words))
    labels = []
    for r in range(R):
        mine = np.flatnonzero(region == r)
        per_artist: dict[str, int] = {}
        for i in mine:
            per_artist[artists[i]] = per_artist.get(artists[i], 0) + int(pop[i])
        top = sorted(per_artist, key=lambda a: (-per_artist[a], a))[:n_artists]
        c = rw[r]
        score = c * np.log(((c + 1) / (c.sum() + len(words))) / share_all)
        best = [words[j] for j in np.argsort(-score, kind="stable")[:n_words] if c[j] >= 3 and score[j] > 0]
        labels.append(" · ".join(x for x in (" ".join(best), ", ".join(top)) if x))
    return labels


def neighbour_lists(ctx, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, k) track_idx (-1 pads) and scores of each track's nearest tracks, exactly as `musicmap
    similar --track-uri <it> --k k` lists them (recommend.similar.similar, in blocks)."""
    rec, T = recommender(ctx), len(ctx.model.tracks)
    ids, scores = np.full((T, k), -1, np.int32), np.zeros((T, k), np.float32)
    for lo in progress(range(0, T, NEIGHBOUR_CHUNK), desc="neighbours", unit="block",
                       disable=not ctx.cfg.train.progress):
        block = [np.array([t], np.int64) for t in range(lo, min(lo + NEIGHBOUR_CHUNK, T))]
        r, s = rec.rank(block, [None] * len(block), k)
        ids[lo:lo + len(block)], scores[lo:lo + len(block)] = r, s
    return ids, scores


def page_data(tracks: pa.Table, xy, region, labels, nbr, nbr_scores, model, vector_tracks: int) -> dict:
    """What data.js hands the page: arrays as base64 little-endian typed arrays."""

    def b64(a: np.ndarray, dtype) -> str:
        return base64.b64encode(np.ascontiguousarray(a, dtype).tobytes()).decode("ascii")
    artist_names = tracks["artist_name"].to_pylist()
    artists = list(dict.fromkeys(artist_names))
    artist_id = {a: i for i, a in enumerate(artists)}
    T = len(xy)
    d = {"tracks": T, "names": tracks["track_name"].to_pylist(), "artists": artists,
         "uris": tracks["track_uri"].to_pylist(),
         "artist": b64([artist_id[a] for a in artist_names], "<u4"),
         "playlists": b64(tracks["train_playlists"].to_numpy(), "<u4"),
         "xy": b64(xy, "<f4"), "region": b64(region, "<u2"), "labels": labels,
         "k": int(nbr.shape[1]), "neighbours": b64(nbr, "<i4"), "neighbour_scores": b64(nbr_scores, "<f4"),
         "dim": 0}
    if model is not None and T <= vector_tracks:
        d.update(dim=int(model.tracks.shape[1]), tracks_final=b64(model.tracks, "<f4"),
                 tracks_foldin=b64(model.foldin, "<f4"))
    return d


def write_page(writer: storage.StageWriter, data: dict, title: str) -> None:
    """index.html (the page, its scripts inline) and data.js (window.MUSICMAP_DATA = {...})."""
    html = resources.files(__package__).joinpath("map_page.html").read_text(encoding="utf-8")
    storage.write_bytes(writer.path("index.html"), html.replace("{{TITLE}}", title).encode("utf-8"))
    js = "window.MUSICMAP_DATA = " + json.dumps(data, ensure_ascii=True, separators=(",", ":")) + ";\n"
    storage.write_bytes(writer.path("data.js"), js.encode("ascii"))


def run(cfg) -> dict:
    map_cfg = cfg.map
    t0 = time.time()
    ctx = load_context(cfg, ranker=False)
    # the map lays out the tracks LightGCN embeds (the catalogue's first T): a track in fewer
    # train playlists has no vector to place
    T = len(ctx.model.tracks)
    graph, tracks = ctx.graph.embedded(T), ctx.tracks.slice(0, T)
    log.info("laying out the %d tracks LightGCN embeds of the %d in the catalogue (UMAP, %d neighbours, "
             "seed %d)", T, ctx.graph.num_tracks, map_cfg.n_neighbors, map_cfg.random_seed)
    xy = layout(ctx.model.tracks, map_cfg.n_neighbors, map_cfg.min_dist, map_cfg.random_seed)
    t_layout = time.time() - t0
    region = regions(xy, map_cfg.regions, map_cfg.random_seed)
    labels = region_labels(region, tracks, graph, ctx.train_playlists["name"].to_pylist(),
                           map_cfg.label_artists, map_cfg.label_words)
    log.info("%d regions labelled; neighbour lists of %d tracks", len(labels), T)
    nbr, nbr_scores = neighbour_lists(ctx, map_cfg.neighbours)
    writer = storage.StageWriter(storage.stage_uri(cfg, "map"))
    table = pa.table({"track_idx": pa.array(np.arange(T), pa.int32()), "x": xy[:, 0], "y": xy[:, 1],
                      "cluster": region, "label": pa.array([labels[r] for r in region], pa.string())},
                     schema=schemas.MAP_TRACKS)
    storage.write_parquet(table, writer.path("tracks.parquet"))
    if T > map_cfg.vector_tracks:
        log.warning("%d tracks > map.vector_tracks (%d): the page lists each track's neighbours but "
                    "cannot fold several seeds into a playlist", T, map_cfg.vector_tracks)
    write_page(writer, page_data(tracks, xy, region, labels, nbr, nbr_scores, ctx.model, map_cfg.vector_tracks),
               f"Music Map: {T:,} tracks")
    summary = {"tracks": T, "regions": len(labels), "labels": labels, "layout": "umap",
               "layout_seconds": round(t_layout, 1), "seconds": round(time.time() - t0, 1),
               "vectors": T <= map_cfg.vector_tracks, "model_version": ctx.model.version,
               "graph_version": ctx.committed.version, "foldin_in_page": "lightgcn",
               "neighbours_as": "musicmap similar"}
    storage.write_json(writer.path("summary.json"), summary)
    marker = writer.commit({"stage": "map", "tracks": T, "model_version": ctx.model.version})
    return {"uri": storage.stage_uri(cfg, "map"), "version": marker["version"], "summary": summary,
            "index": storage.join(storage.stage_uri(cfg, "map"), marker["version"], "index.html")}


def add_arguments(p) -> None:
    pass


def run_cli(args) -> int:
    res = run(config_from_args(args))
    s = res["summary"]
    print(f"map of {s['tracks']:,} tracks in {s['regions']} regions ({s['seconds']:.0f}s) committed at "
          f"{res['uri']} ({res['version']})\nopen {res['index']}")
    return 0
