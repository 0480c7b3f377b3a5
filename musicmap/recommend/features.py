"""Candidates and their features for the re-ranker (train.ranker): what each source proposes for
a playlist, and what the ranker knows about each (case, candidate) pair.

    src = Sources(graph, artist_of, album_of, train_modified_at, scorer, title_model, rp3)
    block = src.candidates(seeds, names)               # one chunk of cases
    block.cand  (n, M) int64 track_idx, -1 padded;  block.x  (n, M, F) float32 (NaN = undefined)
    block.x[..., COL["rp3_score"]]                     # a feature by name

Sources, each proposing its top candidates from the whole catalogue (never a seed):
  lightgcn      the trained model (query = fold-in of the seeds): its top k among the tracks it
                embeds, so the pool always holds k tracks when there are seeds;
  cooccurrence  item co-occurrence with the seeds (cosine), top `per_source`;
  rp3beta       RP3beta's random walk from the seeds (tuned on validation), top `per_source`: it
                reaches tracks in one or two train playlists, which LightGCN does not embed;
  popularity    the most frequent train tracks, top `per_source`;
  recent        the most frequent tracks of the newest train playlists (by modified_at), top
                `per_source`: the split is by time, so what is rising at the end of train is a
                strong signal for validation, test and challenge playlists;
  title         tracks of train playlists with the same normalised title, top `per_source`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from musicmap.mpd import normalize_title
from musicmap.recommend.recommenders import CoOccurrence, TitleModel, TrackSignals
from musicmap.topk import flat_pairs, select, topk_rows
from musicmap.train.data import Graph

FEATURES = [
    "lightgcn_score", "lightgcn_gap",        # score, and its distance to the case's best score
    "lightgcn_rank",                          # log(1 + rank) in the source's list (absent: its length)
    "cooc_score", "cooc_share", "cooc_rank",  # cosine co-occurrence, as a share of the case's best
    "rp3_score", "rp3_share", "rp3_rank",     # RP3beta, as a share of the case's best
    "popularity", "recent_10", "recent_25",   # log(1 + playlists holding it): all / newest 10% / 25%
    "first_seen", "mean_time",                # time quantile of its first / average train playlist
    "title_share",                            # share of same-title train playlists that hold it
    "num_seeds", "has_title",                 # about the case
    "artist_share", "album_share",            # share of the seeds by its artist / on its album
    "embedded",                               # 1 when LightGCN has a vector for it, else 0
    "sources",                                # how many sources proposed it
]
COL = {name: j for j, name in enumerate(FEATURES)}
# the per-track features, computed once (TrackSignals), in this order
STATIC = ("popularity", "recent_10", "recent_25", "first_seen", "mean_time")


@dataclass
class Block:
    cand: np.ndarray      # (n, M) int64 candidate track_idx, -1 = padding
    x: np.ndarray         # (n, M, F) float32 features, NaN where a source says nothing
    fallback: np.ndarray  # (n, k) int64: the title model's order (popularity without a title),
                          # to fill a list of fewer than k candidates


class Sources:
    """Everything the candidate features are computed from (all fitted on train playlists).
    scorer: LightGCN (train.recommenders.LightGCNRecommender, over its embedded tracks); rp3: a
    fitted RP3Beta over the catalogue, or None (then it proposes nothing)."""

    def __init__(self, graph: Graph, artist_of: np.ndarray, album_of: np.ndarray,
                 modified_at: np.ndarray, scorer, title_model: TitleModel, rp3=None, k: int = 500,
                 per_source: int = 200):
        self.graph, self.k, self.per_source = graph, k, per_source
        self.artist_of, self.album_of = artist_of, album_of
        self.signals = TrackSignals(graph, modified_at)
        self.cooc = CoOccurrence().fit(graph)
        self.scorer, self.titles, self.rp3 = scorer, title_model, rp3
        s = self.signals
        self.static = np.stack([np.log1p(s.pop), np.log1p(s.recent[0]), np.log1p(s.recent[1]),
                                s.first_seen, s.mean_time], 1).astype(np.float32)   # (T, len(STATIC))

    def scored(self, seeds: list[np.ndarray], seed_keys: np.ndarray, has: np.ndarray) -> dict:
        """{source: Scored} of the seed-based sources for one chunk of cases. LightGCN scores its
        embedded tracks densely; co-occurrence and RP3beta stay sparse (only the tracks the seeds
        reach score above 0), so a chunk costs its seeds' neighbourhoods, not the catalogue."""
        T = self.graph.num_tracks
        out = {"lightgcn": _dense(self.scorer.scores(seeds).float(), seed_keys, T, self.k, has),
               "cooc": _sparse(self.cooc.sparse_scores(seeds), seed_keys, self.per_source, has)}
        out["rp3"] = (_sparse(self.rp3.sparse_scores(seeds), seed_keys, self.per_source, has)
                      if self.rp3 is not None else _silent(len(seeds), self.per_source))
        return out

    def candidates(self, seeds: list[np.ndarray], names: list) -> Block:
        """Candidates and features of one chunk of cases (new playlists, folded in from their seeds)."""
        n, T = len(seeds), self.graph.num_tracks
        has = np.array([len(s) > 0 for s in seeds])
        rows, cols = flat_pairs(seeds)
        seed_keys = np.unique(rows * T + cols)
        scored = self.scored(seeds, seed_keys, has)
        lists = [sc.top for sc in scored.values()]
        m = self.per_source
        lists.append(np.broadcast_to(self.signals.pop_order[:m], (n, min(m, T))))
        lists.append(np.broadcast_to(self.signals.recent_order[:m], (n, min(m, T))))
        title_top, title_share = self._title(names, m)
        lists.append(title_top)
        cand = _union(np.concatenate(lists, 1), seed_keys, T)
        x = self._features(cand, seeds, names, has, scored, title_share)
        x[..., COL["sources"]] = _proposals(cand, lists)
        x[cand < 0] = np.nan
        return Block(cand, x, self.titles.rank(seeds, names, self.k)[0])

    def _title(self, names: list, m: int) -> tuple[np.ndarray, list]:
        """(n, m) top tracks of each case's title (-1 padded), and per case None or the title's
        (tracks ascending, shares)."""
        top = np.full((len(names), m), -1, np.int64)
        shares = []
        tm = self.titles
        for i, name in enumerate(names):
            t = tm.title_id.get(normalize_title(name)) if name else None
            if t is None:
                shares.append(None)
                continue
            lo, hi = tm.starts[t], tm.starts[t + 1]
            tr, sh = tm.key_track[lo:hi], tm.key_share[lo:hi]   # tracks ascending within a title
            best = topk_rows(torch.from_numpy(sh)[None], m, stable=True)[0][0]   # ties by track
            best = best[best >= 0]
            top[i, :len(best)] = tr[best]
            shares.append((tr, sh))
        return top, shares

    def _features(self, cand, seeds, names, has, scored, title_share) -> np.ndarray:
        n, M = cand.shape
        c = np.where(cand >= 0, cand, 0)
        x = np.full((n, M, len(FEATURES)), np.nan, np.float32)
        for name, relative in (("lightgcn", "gap"), ("cooc", "share"), ("rp3", "share")):
            sc = scored[name]
            val, best = sc.lookup(cand), sc.best[:, None]
            known = np.isfinite(val)                      # the source scores this track at all
            x[..., COL[f"{name}_score"]] = val
            x[..., COL[f"{name}_{relative}"]] = np.where(
                known, (val - best) if relative == "gap" else val / np.maximum(best, 1e-12), np.nan)
            # rank in the source's list; absent: the list's length
            x[..., COL[f"{name}_rank"]] = np.where(known, np.log1p(_position(sc.top, cand, self.graph.num_tracks)), np.nan)
            for f in (f"{name}_score", f"{name}_{relative}", f"{name}_rank"):
                x[~has, :, COL[f]] = np.nan
        for j, name in enumerate(STATIC):
            x[..., COL[name]] = self.static[c, j]
        x[..., COL["title_share"]] = 0.0
        for i, ts in enumerate(title_share):
            if ts is not None:
                tr, sh = ts
                pos = np.searchsorted(tr, c[i]).clip(max=len(tr) - 1)
                x[i, :, COL["title_share"]] = np.where(tr[pos] == c[i], sh[pos], 0.0)
        x[..., COL["num_seeds"]] = np.log1p([len(s) for s in seeds])[:, None]
        x[..., COL["has_title"]] = np.array([nm is not None for nm in names], np.float32)[:, None]
        x[..., COL["artist_share"]] = _share(seeds, self.artist_of, c)
        x[..., COL["album_share"]] = _share(seeds, self.album_of, c)
        x[..., COL["embedded"]] = (c < self.scorer.num_tracks).astype(np.float32)
        return x


def _proposals(cand: np.ndarray, lists: list[np.ndarray]) -> np.ndarray:
    """(n, M) how many of the sources' lists hold each candidate."""
    n, M = cand.shape
    T = int(max(cand.max(initial=0), max((int(l.max(initial=0)) for l in lists), default=0))) + 1
    keys = (np.arange(n)[:, None] * T + np.where(cand >= 0, cand, 0)).ravel()
    count = np.zeros(n * M, np.float32)
    for lst in lists:
        count += _find(np.unique((np.arange(n)[:, None] * T + lst)[lst >= 0]), keys)[1]
    return count.reshape(n, M)


def _find(keys: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each of `want` in the sorted `keys` (index 0 where not found)."""
    if not len(keys):
        return np.zeros(want.shape, np.int64), np.zeros(want.shape, bool)
    j = np.searchsorted(keys, want).clip(max=len(keys) - 1)
    return j, keys[j] == want


def _union(lists: np.ndarray, seed_keys: np.ndarray, T: int) -> np.ndarray:
    """Each row's distinct non-negative ids that are not seeds (seed_keys: row * T + track),
    ascending, -1 padded."""
    s = np.sort(lists, axis=1)
    dup = np.zeros_like(s, dtype=bool)
    dup[:, 1:] = s[:, 1:] == s[:, :-1]
    rows = np.arange(len(s))[:, None]
    bad = dup | (s < 0) | np.isin(rows * T + np.maximum(s, 0), seed_keys)
    s = np.where(bad, -1, s)
    order = np.argsort(s < 0, axis=1, kind="stable")          # valid first, still ascending
    s = np.take_along_axis(s, order, 1)
    width = max(int((s >= 0).sum(1).max(initial=0)), 1)
    return s[:, :width]


def _position(top: np.ndarray, cand: np.ndarray, T: int) -> np.ndarray:
    """(n, M) float32 position of each candidate (track_idx < T) in its row of top (n, L);
    absent: L."""
    n, L = top.shape
    valid = top >= 0
    keys = (np.arange(n)[:, None] * T + top)[valid]
    pos = np.broadcast_to(np.arange(L), top.shape)[valid]
    order = np.argsort(keys, kind="stable")
    keys, pos = keys[order], pos[order]
    j, hit = _find(keys, np.arange(n)[:, None] * T + np.maximum(cand, 0))
    return np.where(hit & (cand >= 0), pos[j] if len(pos) else 0, L).astype(np.float32)


@dataclass
class Scored:
    """One source's view of a chunk of cases: what it proposes and what it says of any track."""
    top: np.ndarray      # (n, size) proposed track_idx, best first, -1 padded (none without seeds)
    best: np.ndarray     # (n,) each case's best score (NaN: the source says nothing)
    lookup: object       # (n, M) track_idx -> (n, M) float32 scores, NaN where it says nothing


def _dense(s: torch.Tensor, seed_keys: np.ndarray, T: int, size: int, has: np.ndarray) -> Scored:
    """A source that scores the catalogue's first W tracks (LightGCN: those it embeds; s (n, W))
    and says nothing of the rest."""
    W = s.shape[1]
    rows, cols = seed_keys // T, seed_keys % T
    inside = cols < W
    s[torch.from_numpy(rows[inside]), torch.from_numpy(cols[inside])] = -torch.inf
    v, top = select(s, min(size, W))
    top[~torch.from_numpy(has)[:, None] | ~torch.isfinite(v)] = -1   # no seeds, or nothing to say
    best = s.max(1).values.numpy()

    def lookup(cand: np.ndarray) -> np.ndarray:
        ok = (cand >= 0) & (cand < W)
        val = torch.gather(s, 1, torch.from_numpy(np.where(ok, cand, 0))).numpy()
        return np.where(ok & np.isfinite(val), val, np.nan).astype(np.float32)
    return Scored(top.numpy(), best, lookup)


def _sparse(m, seed_keys: np.ndarray, size: int, has: np.ndarray) -> Scored:
    """A source with sparse scores m (n, T) (scipy CSR): the tracks it reaches score above 0,
    every other track 0 (a known score: it was reached by no walk)."""
    m = m.tocsr()               # rows in order; within a row any order (sorting them costs more)
    n, T = m.shape
    row = np.repeat(np.arange(n), np.diff(m.indptr))
    keys = row * T + m.indices
    keep = (m.data > 0) & ~np.isin(keys, seed_keys) & has[row]
    keys, data, row = keys[keep], m.data[keep].astype(np.float32), row[keep]
    top = np.full((n, size), -1, np.int64)
    best = np.zeros(n, np.float32)
    bounds = np.searchsorted(row, np.arange(n + 1))
    for i in range(n):
        lo, hi = bounds[i], bounds[i + 1]
        v, c = data[lo:hi], keys[lo:hi] - i * T
        if hi - lo > size:                                  # the best `size`, then ordered
            cut = np.argpartition(-v, size - 1)[:size]
            v, c = v[cut], c[cut]
        order = np.lexsort((c, -v))                          # best first, ties by track
        top[i, :len(order)] = c[order]
        best[i] = v.max(initial=0.0)

    def lookup(cand: np.ndarray) -> np.ndarray:
        # the few wanted keys sorted, the many stored ones searched among them
        want = np.arange(n)[:, None] * T + np.maximum(cand, 0)
        uw, back = np.unique(want, return_inverse=True)
        j, hit = _find(uw, keys)
        val = np.zeros(len(uw), np.float32)
        val[j[hit]] = data[hit]
        return val[back.reshape(want.shape)]
    return Scored(top, best, lookup)


def _silent(n: int, size: int) -> Scored:
    """A source that is not there (no RP3beta fitted): proposes nothing, says nothing."""
    return Scored(np.full((n, size), -1, np.int64), np.full(n, np.nan, np.float32),
                  lambda cand: np.full(cand.shape, np.nan, np.float32))


def _share(seeds: list[np.ndarray], group_of: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """(n, M) share of each case's seeds in the candidate's group (artist or album)."""
    G = int(group_of.max(initial=0)) + 1
    rows, cols = flat_pairs(seeds)
    keys, counts = np.unique(rows * G + group_of[cols], return_counts=True)
    pos, hit = _find(keys, np.arange(len(seeds))[:, None] * G + group_of[cand])
    n_seeds = np.maximum([len(s) for s in seeds], 1)[:, None]
    return np.where(hit, counts[pos] if len(keys) else 0, 0) / n_seeds
