"""Recommenders with one interface (`Recommender`), so the model, the re-ranker and the
baselines run in the same harness:

    rec = Popularity().fit(graph)       # or RecentPopularity(modified_at), CoOccurrence(), TitleModel(names)
    ids, scores = rec.rank(seeds, names, k=500)          # (n, k) each: track_idx -1 padded, no seed

seeds: per playlist, its in-vocabulary seed track_idx; names: its title or None.
Ranks never contain a seed. Every per-playlist top-k goes through train.scoring.topk_rows
(Popularity ranks everyone by one order fixed in fit).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from musicmap.mpd import normalize_title
from musicmap.train.data import Graph
from musicmap.train.export import TrainedModel
from musicmap.train.scoring import FoldIn, _flat, seed_queries, topk, topk_rows


class Recommender(Protocol):
    """fit on the train graph, then rank playlists outside it by their seeds and titles.

    rank returns ids (n, k) int64 (track_idx best first, -1 padded, never a seed) and their
    scores (n, k) float32 (-inf padded); a higher score is better within one recommender."""
    name: str

    def fit(self, graph: Graph) -> "Recommender": ...

    def rank(self, seeds: list[np.ndarray], names: list[str | None] | None,
             k: int = 500) -> tuple[np.ndarray, np.ndarray]: ...


class Popularity:
    """The most frequent tracks of the train playlists, minus the seeds."""
    name = "popularity"

    def fit(self, graph: Graph) -> "Popularity":
        self.counts = np.bincount(graph.track, minlength=graph.num_tracks).astype(np.float32)
        self.order = np.argsort(-self.counts, kind="stable")
        return self

    def rank(self, seeds: list[np.ndarray], names=None, k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """The same order for everyone (ties by track_idx), minus each playlist's seeds."""
        top = self.order[:k + max((len(s) for s in seeds), default=0)]
        out = np.full((len(seeds), k), -1, np.int64)
        for i, s in enumerate(seeds):
            r = top[~np.isin(top, s)][:k] if len(s) else top[:k]
            out[i, :len(r)] = r
        scores = np.where(out >= 0, self.counts[out.clip(min=0)], -np.inf).astype(np.float32)
        return out, scores


class RecentPopularity(Popularity):
    """The most frequent tracks of the newest train playlists (the last `share` of them by
    modified_at), ties by overall popularity: the split is by time, so this is what a playlist
    made after the train period most likely holds."""
    name = "recent_popularity"

    def __init__(self, modified_at: np.ndarray, share: float = 0.25):
        self.modified_at, self.share = modified_at, share

    def fit(self, graph: Graph) -> "RecentPopularity":
        from musicmap.train.features import TrackSignals
        s = TrackSignals(graph, self.modified_at, (self.share,))
        self.counts, self.order = s.recent[0], s.recent_order
        return self


class CoOccurrence:
    """Item-based kNN on train co-occurrence: score(t) = Σ_{s∈S} C[s,t] / sqrt(n_s n_t), where
    C[s,t] counts train playlists holding both tracks and n_t the playlists holding t (cosine
    similarity); popularity breaks ties and fills the list."""
    name = "cooccurrence"

    def __init__(self, chunk: int = 256):
        self.chunk = chunk

    def fit(self, graph: Graph) -> "CoOccurrence":
        P, T = graph.num_playlists, graph.num_tracks
        idx = torch.from_numpy(np.stack([graph.playlist, graph.track]))
        ones = torch.ones(graph.num_edges)
        self.X = torch.sparse_coo_tensor(idx, ones, (P, T), check_invariants=False).coalesce().to_sparse_csr()
        self.Xt = torch.sparse_coo_tensor(idx.flip(0), ones, (T, P),
                                          check_invariants=False).coalesce().to_sparse_csr()
        n = torch.from_numpy(np.bincount(graph.track, minlength=T).astype(np.float32))
        self.inv_sqrt = torch.where(n > 0, n.clamp_min(1).rsqrt(), torch.zeros_like(n))
        self.tiebreak = n / (n.max() + 1) * 1e-6
        return self

    @torch.no_grad()
    def scores(self, seeds: list[np.ndarray]) -> torch.Tensor:
        """(n, T) cosine scores Σ_{s∈S} C[s,t] / sqrt(n_s n_t) of one chunk of playlists."""
        T = self.Xt.shape[0]
        rows, cols = _flat(seeds)
        q = torch.zeros(T, len(seeds))
        q[torch.from_numpy(cols), torch.from_numpy(rows)] = self.inv_sqrt[torch.from_numpy(cols)]
        per_playlist = torch.sparse.mm(self.X, q)                 # (P, n)
        return (torch.sparse.mm(self.Xt, per_playlist).t() * self.inv_sqrt).contiguous()

    def rank(self, seeds: list[np.ndarray], names=None, k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        out = [topk_rows(self.scores(seeds[lo:lo + self.chunk]) + self.tiebreak, k, seeds[lo:lo + self.chunk])
               for lo in range(0, len(seeds), self.chunk)]
        if not out:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return np.concatenate([i for i, _ in out]), np.concatenate([s for _, s in out])


class TitleModel:
    """Playlist titles -> tracks: a normalised title (musicmap.mpd.normalize_title) scores each
    track by the share of train playlists with that title that hold it; unknown or missing titles
    fall back to popularity (which also fills the list)."""
    name = "title"

    def __init__(self, titles: list[str | None]):
        self.titles = titles  # title of each graph playlist, by playlist_idx

    def fit(self, graph: Graph) -> "TitleModel":
        norm = np.array([normalize_title(t) for t in self.titles], dtype=object)
        vocab, tid = np.unique(norm, return_inverse=True)
        self.title_id = {t: i for i, t in enumerate(vocab) if t}
        key = tid[graph.playlist].astype(np.int64) * graph.num_tracks + graph.track
        uk, counts = np.unique(key, return_counts=True)
        self.key_title, self.key_track = uk // graph.num_tracks, uk % graph.num_tracks
        self.key_share = counts / np.bincount(tid)[self.key_title]
        self.starts = np.searchsorted(self.key_title, np.arange(len(vocab) + 1))
        pop = np.bincount(graph.track, minlength=graph.num_tracks).astype(np.float64)
        self.pop = pop / pop.max() * 1e-3
        self.num_tracks = graph.num_tracks
        return self

    def scores(self, name: str | None) -> np.ndarray:
        s = self.pop.copy()
        t = self.title_id.get(normalize_title(name)) if name else None
        if t is not None:
            lo, hi = self.starts[t], self.starts[t + 1]
            s[self.key_track[lo:hi]] += self.key_share[lo:hi]
        return s

    def rank(self, seeds: list[np.ndarray], names: list[str | None], k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """Ties by track_idx, as Popularity (an unknown title ranks exactly as it does)."""
        out = np.full((len(names), k), -1, np.int64)
        out_s = np.full((len(names), k), -np.inf, np.float32)
        for i, (s, name) in enumerate(zip(seeds, names)):
            ids, scores = topk_rows(torch.from_numpy(self.scores(name))[None], k, [s], stable=True)
            out[i], out_s[i] = ids[0], scores[0]
        return out, out_s


class LightGCNRecommender:
    """The trained model for playlists outside the graph: the fold-in of their seeds (see
    train.model.foldin_vectors); a playlist with no in-vocabulary seed goes to the title model."""
    name = "lightgcn"

    def __init__(self, model: TrainedModel, title_model: TitleModel | None = None,
                 foldin: str | FoldIn = "lightgcn", device: str = "cpu", chunk: int = 1024):
        self.device = torch.device(device)
        self.tracks = torch.from_numpy(model.tracks).to(self.device)
        self.foldin = torch.from_numpy(model.foldin).to(self.device)
        self.title_model, self.mode, self.chunk = title_model, foldin, chunk

    def queries(self, seeds: list[np.ndarray]) -> torch.Tensor:
        """(n, d) vectors of new playlists from their seeds (the fold-in mode)."""
        return seed_queries(seeds, self.foldin, self.tracks, self.mode)

    @torch.no_grad()
    def scores(self, seeds: list[np.ndarray]) -> torch.Tensor:
        """(n, T) dot products of the seeds' fold-in with every track, on the CPU (one chunk of
        playlists)."""
        return (self.queries(seeds) @ self.tracks.t()).cpu()

    def fit(self, graph: Graph) -> "LightGCNRecommender":
        """Nothing to fit: train/main.py trained the model on this graph."""
        return self

    def rank(self, seeds: list[np.ndarray], names: list[str | None], k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        ranked, scores = topk(self.queries(seeds), self.tracks, k, exclude=seeds, chunk=self.chunk)
        cold = [i for i, s in enumerate(seeds) if len(s) == 0]
        if cold and self.title_model is not None:
            ranked[cold], scores[cold] = self.title_model.rank([seeds[i] for i in cold], [names[i] for i in cold], k)
        return ranked, scores
