"""Recommenders with one interface (`Recommender`), so the model, the re-ranker and the
baselines run in the same harness:

    rec = Popularity().fit(graph)       # or RecentPopularity(modified_at), CoOccurrence(), TitleModel(names)
    ids, scores = rec.rank(seeds, names, k=500)          # (n, k) each: track_idx -1 padded, no seed

seeds: per playlist, its in-catalogue seed track_idx; names: its title or None.
Ranks never contain a seed. Every per-playlist top-k goes through musicmap.topk.topk_rows
(Popularity ranks everyone by one order fixed in fit).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch

from musicmap import cache
from musicmap.graph import Graph, embedded_only
from musicmap.log import progress
from musicmap.mpd import normalize_title
from musicmap.topk import flat_pairs, topk, topk_rows, topk_sparse
from musicmap.train.export import TrainedModel
from musicmap.train.foldin import FoldIn, seed_queries


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


RECENT_SHARES = (0.10, 0.25)  # the ranker's recent_10 and recent_25 features


class TrackSignals:
    """Per-track numbers from the train graph: popularity overall and among the newest train
    playlists, and when in train time a track first and on average appears."""

    def __init__(self, graph: Graph, modified_at: np.ndarray, recent_shares=RECENT_SHARES):
        T = graph.num_tracks
        order = np.lexsort((np.arange(len(modified_at)), modified_at))
        quantile = np.empty(len(modified_at))
        quantile[order] = (np.arange(len(order)) + 0.5) / max(len(order), 1)
        q = quantile[graph.playlist]                               # time quantile of each edge
        self.pop = np.bincount(graph.track, minlength=T).astype(np.float64)
        self.recent = [np.bincount(graph.track[q >= 1 - s], minlength=T).astype(np.float64)
                       for s in recent_shares]
        self.first_seen = np.ones(T)
        np.minimum.at(self.first_seen, graph.track, q)
        self.mean_time = np.bincount(graph.track, weights=q, minlength=T) / np.maximum(self.pop, 1)
        # ties broken by track_idx, as Popularity does
        self.pop_order = np.lexsort((np.arange(T), -self.pop))
        self.recent_order = np.lexsort((np.arange(T), -self.pop, -self.recent[-1]))


class RecentPopularity(Popularity):
    """The most frequent tracks of the newest train playlists (the last `share` of them by
    modified_at), ties by overall popularity: the split is by time, so this is what a playlist
    made after the train period most likely holds."""
    name = "recent_popularity"

    def __init__(self, modified_at: np.ndarray, share: float = 0.25):
        self.modified_at, self.share = modified_at, share

    def fit(self, graph: Graph) -> "RecentPopularity":
        s = TrackSignals(graph, self.modified_at, (self.share,))
        self.counts, self.order = s.recent[0], s.recent_order
        return self


# ------------------------------------------------------------------ item-based methods

def binary_matrix(graph: Graph) -> sp.csr_matrix:
    """(P, T) 0/1 playlist-track matrix of the train graph (float64, one entry per edge)."""
    A = sp.csr_matrix((np.ones(graph.num_edges), (graph.playlist, graph.track)),
                      shape=(graph.num_playlists, graph.num_tracks))
    A.sum_duplicates()
    A.data[:] = 1.0
    return A


def inverse_power(d: np.ndarray, a: float) -> np.ndarray:
    """d^-a where d > 0, else 0 (a track or playlist without edges gets nothing, never inf)."""
    out = np.zeros(len(d))
    nz = d > 0
    out[nz] = d[nz].astype(np.float64) ** -a
    return out


def top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """m with only the k largest entries of each row kept, by the one tie rule (score, then the
    lower column id): a row with more is cut at its k-th value by np.argpartition, and of the
    entries equal to it the lowest ids are kept."""
    counts = np.diff(m.indptr)
    long = np.flatnonzero(counts > k) if k > 0 else np.zeros(0, np.int64)
    if not len(long):
        return m
    keep = np.ones(len(m.data), bool)
    for r in long:
        lo, hi = m.indptr[r], m.indptr[r + 1]
        v = m.data[lo:hi]
        kth = v[np.argpartition(-v, k - 1)[k - 1]]
        tied = np.flatnonzero(v == kth)
        room = k - int((v > kth).sum())
        drop = (v < kth)
        drop[tied[np.argsort(m.indices[lo:hi][tied], kind="stable")[room:]]] = True
        keep[lo:hi] = ~drop
    indptr = np.concatenate([[0], np.cumsum(np.minimum(counts, k))])   # a cut row keeps exactly k
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def row_blocks(work: np.ndarray, budget: float) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed work stays under budget (at least one row each)."""
    out, lo, acc = [], 0, 0.0
    for i, w in enumerate(work):
        if i > lo and acc + w > budget:
            out.append((lo, i))
            lo, acc = i, 0.0
        acc += w
    if lo < len(work):
        out.append((lo, len(work)))
    return out


class ItemBased:
    """What the item-to-item methods share: scores of new playlists as sums of item rows over
    their seeds, ranked by the one tie rule (score, then track_idx: a track no seed reaches
    scores 0, so the list is filled by track_idx, which is train popularity order), and the
    title model (else popularity) for playlists without a seed."""
    name = "itembased"
    title_model = None
    chunk = 256

    def scores(self, seeds: list[np.ndarray]) -> torch.Tensor:
        """(n, T) float32 scores of one chunk of playlists."""
        raise NotImplementedError

    def rank(self, seeds: list[np.ndarray], names=None, k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        n, T = len(seeds), self.num_tracks
        out_i, out_s = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
        rows = max(1, min(self.chunk, 2 ** 26 // max(T, 1)))     # at most 256 MB of scores at once
        for lo in range(0, n, rows):
            part = seeds[lo:lo + rows]
            out_i[lo:lo + rows], out_s[lo:lo + rows] = topk_rows(self.scores(part), k, part)
        return self._cold(seeds, names, k, out_i, out_s)

    def _cold(self, seeds, names, k, out_i, out_s):
        """Playlists without a seed: the title model's list (when there is one)."""
        cold = [i for i, s in enumerate(seeds) if len(s) == 0]
        if cold and self.title_model is not None and names is not None:
            out_i[cold], out_s[cold] = self.title_model.rank([seeds[i] for i in cold], [names[i] for i in cold], k)
        return out_i, out_s

    def _fit_popularity(self, A: sp.csr_matrix) -> np.ndarray:
        d = np.asarray(A.sum(0)).ravel()
        self.num_tracks = A.shape[1]
        return d


def neighbour_matrices(A: sp.csr_matrix, row_w: np.ndarray, mid_w: np.ndarray, col_ws: list[np.ndarray],
                       neighbours: int, rows: np.ndarray | None = None, block_work: float = 2e7) -> list[sp.csr_matrix]:
    """Item-to-item neighbour matrices of the (P, T) 0/1 playlist-track matrix A, one per column
    weighting c, sharing one walk:

        W_c[i, j] = row_w[i] Σ_u A[u, i] mid_w[u] A[u, j] col_w_c[j]     (i ≠ j; top `neighbours` of row i)

    built a block of rows at a time (blocks sized by the walk's work, scipy.sparse), so nothing
    T x T is ever dense, and each row cut to its `neighbours` best (ties by the lower track id)
    straight into the result's arrays (reserved for `neighbours` per row: pages never written
    take no memory), so the build holds one copy of each matrix and one block's walk.
    rows: only these tracks' rows (the others empty); None = every track."""
    T = A.shape[1]
    up = (sp.diags(row_w.astype(np.float32)) @ A.T).tocsr()           # (T, P) track -> playlist
    down = (sp.diags(mid_w.astype(np.float32)) @ A).tocsr()           # (P, T) playlist -> track
    rows = np.arange(T) if rows is None else np.unique(np.asarray(rows, np.int64))
    work = (A.T.tocsr() @ np.asarray(A.sum(1)).ravel())[rows]          # entries each row touches
    idx = np.int32 if max(len(rows) * neighbours, T) < 2 ** 31 else np.int64   # scipy: one index type
    out = [(np.empty(len(rows) * neighbours, np.float32), np.empty(len(rows) * neighbours, idx),
            np.zeros(T + 1, idx)) for _ in col_ws]
    filled = [0] * len(col_ws)
    blocks = row_blocks(work, block_work)
    for lo, hi in progress(blocks, desc="item neighbours", unit="block", disable=len(blocks) < 20):
        r = rows[lo:hi]
        w = (up[r] @ down).tocsr()
        w.data[w.indices == np.repeat(r, np.diff(w.indptr))] = 0.0    # no track is its own neighbour
        w.eliminate_zeros()
        for j, c in enumerate(col_ws):
            m = top_per_row(sp.csr_matrix((w.data * c[w.indices], w.indices, w.indptr), shape=w.shape), neighbours)
            data, indices, counts = out[j]
            data[filled[j]:filled[j] + m.nnz], indices[filled[j]:filled[j] + m.nnz] = m.data, m.indices
            counts[r + 1] = np.diff(m.indptr)
            filled[j] += m.nnz
    return [sp.csr_matrix((data[:n], indices[:n], np.cumsum(counts, dtype=idx)), shape=(T, T), copy=False)
            for (data, indices, counts), n in zip(out, filled)]


class Neighbours(ItemBased):
    """An item-based method whose scores are sums of rows of a sparse (T, T) neighbour matrix W
    over a playlist's seeds: built once per fit (neighbour_matrices) and, given the storage
    config, cached on this machine per graph version and settings (musicmap.cache), so the
    ranks of a job and the commands after it map one copy instead of each refitting it.
    Scoring a playlist costs its seeds' neighbours, never a rescan of the edges."""
    neighbours = 200

    def params(self) -> dict:
        """What W is made from, beside the graph (the cache key)."""
        raise NotImplementedError

    def matrix(self, graph: Graph) -> sp.csr_matrix:
        """W of the graph."""
        raise NotImplementedError

    def fit(self, graph: Graph, storage_cfg=None) -> "Neighbours":
        self.num_tracks = graph.num_tracks
        if storage_cfg is None or not graph.version:
            self.W = self.matrix(graph)
            return self
        key = f"{graph.version}/{self.name}-{cache.digest(self.params())}"
        self.W = cache.csr_from(cache.cached(storage_cfg, key, lambda: cache.csr_arrays(self.matrix(graph))))
        return self

    def sparse_scores(self, seeds: list[np.ndarray]) -> sp.csr_matrix:
        """(n, T) sparse scores: only the seeds' neighbours are stored (a seed listed twice
        counts once)."""
        T = self.num_tracks
        rows, cols = flat_pairs(seeds)
        key = np.unique(rows * T + cols)
        q = sp.csr_matrix((np.ones(len(key), np.float32), (key // T, key % T)), shape=(len(seeds), T))
        return (q @ self.W).tocsr()

    def scores(self, seeds: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(self.sparse_scores(seeds).toarray())

    def rank(self, seeds: list[np.ndarray], names=None, k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """As ItemBased.rank, from the sparse scores: a row costs its seeds' neighbours, not the
        catalogue (1M graph playlists x 2.26M tracks)."""
        n = len(seeds)
        out_i, out_s = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
        for lo in range(0, n, 1024):
            part = seeds[lo:lo + 1024]
            out_i[lo:lo + 1024], out_s[lo:lo + 1024] = topk_sparse(self.sparse_scores(part), k, part)
        return self._cold(seeds, names, k, out_i, out_s)


class RP3Beta(Neighbours):
    """RP3beta (Paudel et al. 2017): a two-step random walk track -> playlist -> track whose
    transition probabilities are raised to alpha, each reached track's score divided by its
    degree^beta (pushing popular tracks down), and each track's `neighbours` best kept.

        W[i, j] = Σ_u (A_ui / d_i)^α (A_uj / d_u)^α / d_j^β     (i ≠ j; top `neighbours` of row i)
        score(j | seeds S) = Σ_{i ∈ S} W[i, j]

    A is the 0/1 playlist-track matrix, d_i a track's and d_u a playlist's degree; a track without
    a train edge (degree 0) has an empty row and column."""
    name = "rp3beta"

    def __init__(self, alpha: float = 0.6, beta: float = 0.0, neighbours: int = 200,
                 title_model: "TitleModel | None" = None, chunk: int = 256, block_work: float = 2e7):
        self.alpha, self.beta, self.neighbours = alpha, beta, neighbours
        self.title_model, self.chunk, self.block_work = title_model, chunk, block_work

    def params(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "neighbours": self.neighbours}

    def matrix(self, graph: Graph) -> sp.csr_matrix:
        return self.fit_betas(graph, [self.beta])[0].W

    def fit_betas(self, graph: Graph, betas: list[float], rows: np.ndarray | None = None) -> list["RP3Beta"]:
        """One fitted RP3Beta per beta (same alpha and neighbours), sharing the walk: the sparse
        product is the cost, and beta only reweighs its columns before each row's top is kept.
        rows: compute only these tracks' rows of W (tuning needs the rows of its cases' seeds
        only); None = every track."""
        A = binary_matrix(graph)
        d_i, d_u = np.asarray(A.sum(0)).ravel(), np.asarray(A.sum(1)).ravel()
        Ws = neighbour_matrices(A, inverse_power(d_i, self.alpha), inverse_power(d_u, self.alpha),
                                [inverse_power(d_i, b) for b in betas], self.neighbours, rows, self.block_work)
        out = []
        for beta, W in zip(betas, Ws):
            rec = RP3Beta(self.alpha, beta, self.neighbours, self.title_model, self.chunk, self.block_work)
            rec.num_tracks, rec.W = graph.num_tracks, W
            out.append(rec)
        return out


class EASE(ItemBased):
    """EASE^R (Steck 2019): the closed-form item-to-item weights
        B = I - P diag(1 / diag(P)),   P = (AᵀA + λI)⁻¹,   score(j | seeds S) = Σ_{i ∈ S} B[i, j].
    B is dense T x T, so it only runs up to `max_tracks` tracks (TooLarge above: callers skip it
    with a log line)."""
    name = "ease"

    class TooLarge(ValueError):
        pass

    def __init__(self, lam: float = 500.0, title_model: "TitleModel | None" = None, max_tracks: int = 20000,
                 chunk: int = 256):
        self.lam, self.title_model, self.max_tracks, self.chunk = lam, title_model, max_tracks, chunk

    def fit(self, graph: Graph) -> "EASE":
        if graph.num_tracks > self.max_tracks:
            raise EASE.TooLarge(f"EASE^R needs a dense {graph.num_tracks:,} x {graph.num_tracks:,} matrix "
                                f"(more than baselines.ease_max_tracks = {self.max_tracks:,} tracks)")
        A = binary_matrix(graph)
        self._fit_popularity(A)
        G = (A.T @ A).toarray()
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = P / -np.diag(P)
        np.fill_diagonal(B, 0.0)
        self.B = torch.from_numpy(B.astype(np.float32))
        return self

    def scores(self, seeds: list[np.ndarray]) -> torch.Tensor:
        rows, cols = flat_pairs(seeds)
        q = torch.zeros(len(seeds), self.num_tracks)
        q[torch.from_numpy(rows), torch.from_numpy(cols)] = 1.0
        return q @ self.B


class CoOccurrence(Neighbours):
    """Item-based kNN on train co-occurrence: score(t) = Σ_{s∈S} C[s,t] / sqrt(n_s n_t), where
    C[s,t] counts train playlists holding both tracks and n_t the playlists holding t (cosine
    similarity), over each track's `neighbours` most co-occurring tracks (W, as RP3beta); the
    title model (when given) serves playlists without a seed.

    The neighbours are chosen by count C[s,t] (ties: the more popular track), not by cosine: by
    cosine every track met once in one playlist ties at the top of the row (1 / sqrt(n_s)), and
    keeping 200 of those lost 0.02 NDCG against the unpruned scores on the 20K long-tailed
    generated set, where keeping the 200 most co-occurring gained 0.05 (bench/BENCHMARKS.md)."""
    name = "cooccurrence"

    def __init__(self, chunk: int = 256, title_model: "TitleModel | None" = None, neighbours: int = 200,
                 block_work: float = 2e7):
        self.chunk, self.title_model, self.neighbours, self.block_work = chunk, title_model, neighbours, block_work

    def params(self) -> dict:
        return {"neighbours": self.neighbours, "by": "count"}

    def matrix(self, graph: Graph) -> sp.csr_matrix:
        A = binary_matrix(graph)
        inv = inverse_power(np.asarray(A.sum(0)).ravel(), 0.5)
        ones = np.ones(A.shape[1])
        W = neighbour_matrices(A, ones, np.ones(A.shape[0]), [ones], self.neighbours, None, self.block_work)[0]
        W.data *= (inv[np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))] * inv[W.indices]).astype(np.float32)
        return W


class TitleModel:
    """Playlist titles -> tracks: a normalised title (musicmap.mpd.normalize_title) scores each
    track by the share of train playlists with that title that hold it, plus its popularity
    scaled to at most 1e-3 (a tiebreak among equal shares); unknown or missing titles fall back
    to popularity (which also fills the list)."""
    name = "title"

    def __init__(self, titles: list[str | None]):
        self.titles = titles  # title of each graph playlist, by playlist_idx

    def fit(self, graph: Graph, storage_cfg=None) -> "TitleModel":
        """With storage_cfg, the (title, track) arrays are built once per machine and shared
        (musicmap.cache)."""
        norm = np.array([normalize_title(t) for t in self.titles], dtype=object)
        distinct, tid = np.unique(norm, return_inverse=True)
        self.title_id = {t: i for i, t in enumerate(distinct) if t}
        pop = np.bincount(graph.track, minlength=graph.num_tracks).astype(np.float64)
        self.pop = pop / max(pop.max(initial=0), 1) * 1e-3

        def keys() -> dict[str, np.ndarray]:
            key = tid[graph.playlist].astype(np.int64) * graph.num_tracks + graph.track
            uk, counts = np.unique(key, return_counts=True)
            title, track = uk // graph.num_tracks, uk % graph.num_tracks
            share = counts / np.bincount(tid)[title]
            # within each title, its tracks best first (score, then track): a title's top k is a
            # prefix, so ranking a playlist never sorts the title's tracks again
            order = np.lexsort((track, -(share + self.pop[track]), title))
            return {"title": title, "track": track, "share": share, "order": order,
                    "starts": np.searchsorted(title, np.arange(len(distinct) + 1))}
        cached = storage_cfg is not None and graph.version
        a = cache.cached(storage_cfg, f"{graph.version}/title-index-{len(distinct)}", keys) if cached else keys()
        self.key_title, self.key_track, self.key_share = a["title"], a["track"], a["share"]
        self.order, self.starts = a["order"], a["starts"]
        self.num_tracks = graph.num_tracks
        self.pop_order = np.lexsort((np.arange(graph.num_tracks), -self.pop))
        return self

    def scores(self, name: str | None) -> np.ndarray:
        s = self.pop.copy()
        t = self.title_id.get(normalize_title(name)) if name else None
        if t is not None:
            lo, hi = self.starts[t], self.starts[t + 1]
            s[self.key_track[lo:hi]] += self.key_share[lo:hi]
        return s

    def top(self, name: str | None, n: int) -> np.ndarray:
        """Indices into the key arrays of the title's n best tracks, best first (none for an
        unknown or missing title)."""
        t = self.title_id.get(normalize_title(name)) if name else None
        return np.zeros(0, np.int64) if t is None else self.order[self.starts[t]:self.starts[t + 1]][:n]

    def rank(self, seeds: list[np.ndarray], names: list[str | None], k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """The top k of `scores` by the one tie rule (an unknown title ranks exactly as
        Popularity does). Only the title's k + |seeds| best tracks and the k + |seeds| most
        popular can be in a top k, so a playlist costs those, not the catalogue."""
        out = np.full((len(names), k), -1, np.int64)
        out_s = np.full((len(names), k), -np.inf, np.float32)
        for i, (s, name) in enumerate(zip(seeds, names)):
            best = self.top(name, k + len(s))
            popular = self.pop_order[:k + len(s)]
            cand = np.concatenate([self.key_track[best], popular])
            sc = np.concatenate([self.key_share[best] + self.pop[self.key_track[best]], self.pop[popular]])
            first = np.lexsort((-sc, cand))                       # each track once, at its best score
            keep = np.ones(len(cand), bool)
            keep[first[1:]] = cand[first[1:]] != cand[first[:-1]]
            keep &= ~np.isin(cand, s)
            cand, sc = cand[keep], sc[keep]
            top = np.lexsort((cand, -sc))[:k]
            out[i, :len(top)], out_s[i, :len(top)] = cand[top], sc[top]
        return out, out_s


class LightGCNRecommender:
    """The trained model for playlists outside the graph: the fold-in of their seeds (see
    train.foldin.foldin_vectors). It ranks the tracks it embeds (the catalogue's first T; seeds
    beyond them are left out of the fold-in). A playlist with no embedded seed has no vector
    (never the zero vector): `fallback` serves it (what validation measured best for such
    playlists: the title model or an item-based method, which reaches rare tracks), else the
    title model; a playlist without a seed always goes to the title model.

        rec = LightGCNRecommender(model, title_model, foldin, fallback=ctx.fallback)
        rec.served_by(seeds)        # per playlist: "lightgcn", the fallback's name or "title"
    fallback: a Recommender, or a function giving one on first use (it may be a whole fit)."""
    name = "lightgcn"

    def __init__(self, model: TrainedModel, title_model: TitleModel | None = None,
                 foldin: str | FoldIn = "lightgcn", device: str = "cpu", chunk: int = 1024, fallback=None):
        self.device = torch.device(device)
        self.tracks = torch.from_numpy(model.tracks).to(self.device)
        self.foldin = torch.from_numpy(model.foldin).to(self.device)
        self.num_tracks = len(model.tracks)
        self.title_model, self.mode, self.chunk = title_model, foldin, chunk
        self._fallback = fallback

    def fallback(self):
        """What serves a playlist with seeds but no embedded one (None: the title model)."""
        if callable(self._fallback) and not hasattr(self._fallback, "rank"):
            self._fallback = self._fallback()
        return self._fallback

    def queries(self, seeds: list[np.ndarray]) -> torch.Tensor:
        """(n, d) vectors of new playlists from their seeds (the fold-in mode); a playlist with
        no embedded seed gets zeros, which no caller ranks by (see reach)."""
        return seed_queries(embedded_only(seeds, self.num_tracks), self.foldin, self.tracks, self.mode)

    def reach(self, seeds: list[np.ndarray]) -> np.ndarray:
        """(n,) bool: whether each playlist has an embedded seed (LightGCN has a vector for it)."""
        return np.array([bool((s < self.num_tracks).any()) for s in seeds], bool)

    @torch.no_grad()
    def scores(self, seeds: list[np.ndarray]) -> torch.Tensor:
        """(n, T) dot products of the seeds' fold-in with every embedded track, on the CPU (one
        chunk of playlists; rows without an embedded seed are meaningless: see reach)."""
        return (self.queries(seeds) @ self.tracks.t()).cpu()

    def fit(self, graph: Graph) -> "LightGCNRecommender":
        """Nothing to fit: train/main.py trained the model on this graph."""
        return self

    def served_by(self, seeds: list[np.ndarray]) -> list[str]:
        """Per playlist, what rank() serves it with: lightgcn, the fallback or the title model."""
        fb = self.fallback() if any(len(s) for s, r in zip(seeds, self.reach(seeds)) if not r) else None
        return ["lightgcn" if r else (fb.name if fb is not None and len(s) else "title")
                for s, r in zip(seeds, self.reach(seeds))]

    def rank(self, seeds: list[np.ndarray], names: list[str | None], k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        known = embedded_only(seeds, self.num_tracks)
        ranked, scores = topk(self.queries(known), self.tracks, k, exclude=known, chunk=self.chunk)
        other = np.flatnonzero(~self.reach(seeds))
        if len(other):
            names = names if names is not None else [None] * len(seeds)
            seeded = [i for i in other if len(seeds[i])]
            fb = self.fallback() if seeded else None
            to_fb = seeded if fb is not None else []
            to_title = [i for i in other if i not in set(to_fb)]
            for idx, rec in ((to_fb, fb), (to_title, self.title_model)):
                if len(idx) and rec is not None:
                    ranked[idx], scores[idx] = rec.rank([seeds[i] for i in idx], [names[i] for i in idx], k)
        return ranked, scores
