"""The committed graph's reader, shared by every stage after build-graph: the train edges (and
their normalised adjacency), the catalogue of tracks, and which of them LightGCN embeds.

    graph, committed = load_graph(storage.stage_uri(cfg, "graph"), cfg.storage)
    tracks = load_tracks(committed)                   # graph/tracks by track_idx
    T = embedded_tracks(committed, cfg.model.embed_min_playlists)

The catalogue (graph/tracks: every track of a train playlist, at graph.min_playlists 1) is what
the item-based methods, the title model and popularity rank; LightGCN embeds its first
`embedded_tracks` (model.embed_min_playlists), the ones in enough train playlists to learn a
vector from. The evaluation cases are read by musicmap.cases.load_eval.

Node numbering of the bipartite graph (N = P + T nodes): playlists 0..P-1 (graph/playlists
playlist_idx of the train split), tracks P..P+T-1 (P + graph/tracks track_idx).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from musicmap import cache, schemas, storage
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

    def embedded(self, num_tracks: int, storage_cfg=None) -> "Graph":
        """The graph LightGCN trains on: its first num_tracks tracks (embedded_tracks) with their
        edges; every playlist stays a node (one whose tracks are all rarer has no edge). With
        storage_cfg, its arrays are built once per machine and shared by the ranks (musicmap.cache)."""
        def arrays() -> dict[str, np.ndarray]:
            keep = self.track < num_tracks
            return {"playlist": self.playlist[keep], "track": self.track[keep], "weight": self.weight[keep]}
        cached = storage_cfg is not None and self.version
        a = cache.cached(storage_cfg, f"{self.version}/edges-embedded-{num_tracks}", arrays) if cached else arrays()
        return Graph(self.num_playlists, num_tracks, a["playlist"], a["track"], a["weight"], self.version)

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


def uri_index(tracks_table) -> dict[str, int]:
    return dict(zip(tracks_table["track_uri"].to_pylist(), tracks_table["track_idx"].to_pylist()))
