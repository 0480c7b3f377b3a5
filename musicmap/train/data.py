"""Loading the committed graph for the torch side: the train edges, the normalised adjacency,
the evaluation cases, the track dictionary.

The catalogue (graph/tracks: every track of a train playlist, at graph.min_playlists 1) is what
the item-based sources, the title model and popularity rank; LightGCN embeds its first
`embedded_tracks` (model.embed_min_playlists), the ones in enough train playlists to learn a
vector from.

Node numbering of the bipartite graph (N = P + T nodes): playlists 0..P-1 (graph/playlists
playlist_idx of the train split), tracks P..P+T-1 (P + graph/tracks track_idx).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from musicmap import cache, cases, schemas, storage
from musicmap.errors import InputError

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@dataclass
class Graph:
    """The train graph: E edges (playlist, track, weight) over P playlists and T tracks."""
    num_playlists: int
    num_tracks: int
    playlist: np.ndarray          # (E,) int64, sorted by (playlist, track)
    track: np.ndarray             # (E,) int64
    weight: np.ndarray            # (E,) float32
    version: str = ""             # the committed graph version (checkpoints refer to it)
    _keys: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_edges(self) -> int:
        return len(self.playlist)

    @property
    def num_nodes(self) -> int:
        return self.num_playlists + self.num_tracks

    def degrees(self, use_weight: bool) -> np.ndarray:
        """(N,) float64 node degrees (weighted when use_weight), playlists first."""
        w = self.weight.astype(np.float64) if use_weight else None
        dp = np.bincount(self.playlist, weights=w, minlength=self.num_playlists)
        dt = np.bincount(self.track, weights=w, minlength=self.num_tracks)
        # float even unweighted: bincount gives integers there, and adjacency() wrote deg ** -0.5
        # into an integer array, so every node of degree 2 or more got 0 and LightGCN propagated
        # nothing (tests/test_model.py checks the matrix by hand)
        return np.concatenate([dp, dt]).astype(np.float64)

    def adjacency(self, use_weight: bool = False) -> torch.Tensor:
        """Â = D^-1/2 A D^-1/2 as an (N, N) float32 torch.sparse CSR tensor. Symmetric: the
        playlist->track block and its transpose. 2E stored entries."""
        P, T, N = self.num_playlists, self.num_tracks, self.num_nodes
        deg = self.degrees(use_weight)
        inv = np.zeros_like(deg)
        nz = deg > 0
        inv[nz] = deg[nz] ** -0.5
        w = self.weight.astype(np.float64) if use_weight else np.ones(self.num_edges)
        val = (w * inv[self.playlist] * inv[P + self.track]).astype(np.float32)
        # playlist rows: edges are sorted by (playlist, track) already
        by_track = np.lexsort((self.playlist, self.track))
        cols = np.concatenate([P + self.track, self.playlist[by_track]])
        vals = np.concatenate([val, val[by_track]])
        counts = np.concatenate([np.bincount(self.playlist, minlength=P),
                                 np.bincount(self.track, minlength=T)])
        crow = np.zeros(N + 1, np.int64)
        np.cumsum(counts, out=crow[1:])
        return torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(cols.astype(np.int64)),
                                       torch.from_numpy(vals), (N, N), check_invariants=False)

    def positive_keys(self) -> np.ndarray:
        """Sorted playlist * T + track keys of every edge (for membership tests)."""
        if self._keys is None:
            self._keys = self.playlist * self.num_tracks + self.track  # sorted: edges are sorted
        return self._keys

    def embedded(self, num_tracks: int) -> "Graph":
        """The graph LightGCN trains on: its first num_tracks tracks (embedded_tracks) with their
        edges; every playlist stays a node (one whose tracks are all rarer has no edge)."""
        keep = self.track < num_tracks
        return Graph(self.num_playlists, num_tracks, self.playlist[keep], self.track[keep],
                     self.weight[keep], self.version)

    def playlist_tracks(self, p: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.playlist, [p, p + 1])
        return self.track[lo:hi]


def load_graph(graph_uri: str, storage_cfg=None) -> tuple[Graph, storage.Committed]:
    """The committed train graph at graph_uri (refuses an uncommitted one). With storage_cfg,
    the edge arrays are built once per machine and memory-mapped (musicmap.cache): the ranks of a
    job and the commands after it share one copy."""
    g = storage.open_committed(graph_uri, "build-graph")
    P, T = int(g.info["graph_playlists"]), int(g.info["tracks"])

    def edges() -> dict[str, np.ndarray]:
        t = storage.read_parquet(g.path("edges"), schema=schemas.EDGES)
        pl = t["playlist_idx"].to_numpy().astype(np.int64)
        tr = t["track_idx"].to_numpy().astype(np.int64)
        w = t["weight"].to_numpy().astype(np.float32)
        if len(pl) and (pl.max() >= P or tr.max() >= T or pl.min() < 0 or tr.min() < 0):
            raise InputError(f"{g.path('edges')}: ids out of range for {P} playlists / {T} tracks")
        order = np.lexsort((tr, pl))
        return {"playlist": pl[order], "track": tr[order], "weight": w[order]}
    a = edges() if storage_cfg is None else cache.cached(storage_cfg, f"{g.version}/edges", edges)
    return Graph(P, T, a["playlist"], a["track"], a["weight"], g.version), g


def embedded_tracks(graph: storage.Committed, min_playlists: int) -> int:
    """How many tracks LightGCN embeds (model.embed_min_playlists): those in at least
    min_playlists train playlists. They are the catalogue's first ones, since track_idx is given
    by train playlist count, descending, so an embedded track keeps its catalogue id."""
    counts = load_tracks(graph, ["track_idx", "train_playlists"])["train_playlists"].to_numpy()
    if (np.diff(counts) > 0).any():
        raise InputError(f"{graph.path('tracks')}: track_idx is not ordered by train_playlists "
                         f"(descending), as build-graph writes it; rebuild the graph")
    return int((counts >= min_playlists).sum())


def embedded_only(seeds: list[np.ndarray], num_tracks: int) -> list[np.ndarray]:
    """The seeds LightGCN has a vector for (track_idx below num_tracks)."""
    return [s[s < num_tracks] for s in seeds]


def load_tracks(graph: storage.Committed, columns: list[str] | None = None):
    """graph/tracks as a pyarrow table sorted by track_idx."""
    t = storage.read_parquet(graph.path("tracks"), columns=columns, schema=schemas.TRACKS)
    return t.sort_by("track_idx")


@dataclass
class EvalCases:
    """Evaluation cases of one split, as arrays the scorers use.
    holdout ids: track_idx for in-vocabulary holdouts, a distinct negative id (-2, -3, ...) for
    each out-of-vocabulary one, so they count in |G| and never match."""
    pid: np.ndarray
    category: list[str]
    name: list[str | None]
    seeds: list[np.ndarray]            # in-vocabulary seed track_idx
    seed_uris: list[list[str]]
    holdouts: list[np.ndarray]         # ids as above
    holdout_uris: list[list[str]]
    holdout_artists: list[list[str]]
    drawn: tuple[int, int] | None = None   # (playlists drawn, playlists of the split) when sampled

    def __len__(self) -> int:
        return len(self.pid)

    def subset(self, idx) -> "EvalCases":
        idx = list(idx)
        return EvalCases(self.pid[idx], *[[getattr(self, f)[i] for i in idx] for f in
                                          ("category", "name", "seeds", "seed_uris", "holdouts",
                                           "holdout_uris", "holdout_artists")], drawn=self.drawn)


def load_eval(graph: storage.Committed, split: str, uris, categories: set[str] | None = None,
              max_playlists: int = 0, random_seed: int = 0) -> EvalCases:
    """The evaluation cases of one split (and of `categories`), by pid then category. uris: the
    catalogue's track URIs by track_idx (a pyarrow array), or a {uri: track_idx} dict.
    max_playlists: only the cases of that many of the split's playlists, drawn by
    musicmap.cases.sample (the same ones for every method and stage; 0 = all); `drawn` says how
    many of how many."""
    where = [("split", "=", split)]
    pids = storage.read_parquet(graph.path("eval"), columns=["pid"], schema=schemas.EVAL, filters=where)["pid"]
    pids = pids.to_numpy().astype(np.int64)
    keep = cases.sample(pids, max_playlists, random_seed)
    total = len(np.unique(pids))
    if not keep.all():
        where = [*where, ("pid", "in", np.unique(pids[keep]).tolist())]
    t = storage.read_parquet(graph.path("eval"), schema=schemas.EVAL, filters=where)
    if categories is not None:
        t = t.filter(pc.is_in(t["category"], pa.array(sorted(categories), pa.string())))
    t = t.sort_by([("pid", "ascending"), ("category", "ascending")])
    return EvalCases(
        pid=t["pid"].to_numpy().astype(np.int64), category=t["category"].to_pylist(),
        name=t["name"].to_pylist(), seeds=_split(*_flat(t["seed_idx"])),
        seed_uris=t["seed_uris"].to_pylist(), holdouts=_holdout_ids(t["holdout_uris"], uris),
        holdout_uris=t["holdout_uris"].to_pylist(), holdout_artists=t["holdout_artist_uris"].to_pylist(),
        drawn=(len(np.unique(pids[keep])), total) if max_playlists else None)


def _flat(col) -> tuple[np.ndarray, np.ndarray]:
    """(values, lengths) of a list column: the lists' items end to end, and each list's length."""
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy().astype(np.int64)
    return pc.list_flatten(col).to_numpy(zero_copy_only=False), lengths


def _split(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(values.astype(np.int64), np.cumsum(lengths)[:-1]) if len(lengths) else []


def _holdout_ids(col, uris) -> list[np.ndarray]:
    """Each case's holdout ids (EvalCases.holdouts): track_idx, or -2, -3, ... for the case's
    first, second, ... track outside the catalogue. uris: as load_eval's."""
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(col)
    if isinstance(uris, dict):
        pos = pc.index_in(flat, value_set=pa.array(list(uris), pa.string()))
        idx_of = np.fromiter(uris.values(), np.int64, len(uris))
    else:
        pos, idx_of = pc.index_in(flat, value_set=uris), None
    found = pos.is_valid().to_numpy(zero_copy_only=False)
    ids = np.empty(len(flat), np.int64)
    at = pos.drop_null().to_numpy()
    ids[found] = at if idx_of is None else idx_of[at]
    missed = np.concatenate([[0], np.cumsum(~found)])                 # misses before each item
    start = np.repeat(np.cumsum(lengths) - lengths, lengths)           # its case's first item
    ids[~found] = (-1 - (missed[1:] - missed[start]))[~found]
    return _split(ids, lengths)


def uri_index(tracks_table) -> dict[str, int]:
    return dict(zip(tracks_table["track_uri"].to_pylist(), tracks_table["track_idx"].to_pylist()))

