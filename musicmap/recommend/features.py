"""Candidates and their features for the re-ranker (recommend.ranker): what each source proposes for
a playlist, and what the ranker knows about each (case, candidate) pair.

    src = Sources(graph, artist_of, album_of, train_modified_at, lightgcn, title_model, rp3beta, cooccurrence)
    block = src.candidates(seeds, names)               # one chunk of cases
    block.cand  (n, M) int64 track_idx, -1 padded;  block.x  (n, M, F) float32 (NaN = undefined)
    block.x[..., COL["rp3beta_score"]]                 # a feature by name (FEATURES: name -> function)

Sources, each proposing its top candidates from the whole catalogue (never a seed):
  lightgcn      the trained model (query = fold-in of the seeds): its top k among the tracks it
                embeds, so the pool always holds k tracks when a seed is embedded. A case whose
                seeds are all too rare to be embedded has no LightGCN query: the source proposes
                nothing and its features are missing (NaN), in fitting and serving alike, and
                LightGBM sends a missing value down each split's learned default branch, as it
                does for a case without seeds;
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
from functools import cached_property

import numpy as np
import torch

from musicmap.graph import Graph
from musicmap.mpd import normalize_title
from musicmap.recommend.recommenders import CoOccurrence, TitleModel, TrackSignals
from musicmap.topk import flat_pairs, select


@dataclass
class Pairs:
    """One chunk's (case, candidate) pairs and what their features are computed from."""
    src: "Sources"
    cand: np.ndarray      # (n, M) candidate track_idx, -1 padded
    seeds: list           # per case, its seed track_idx
    names: list           # per case, its title or None
    has: np.ndarray       # (n,) whether the case has seeds
    scored: dict          # {source: Scored} of the seed-based sources
    lists: list           # every source's proposals, (n, *) each
    title_share: list     # per case, None or its title's (tracks ascending, shares)

    @cached_property
    def c(self) -> np.ndarray:
        """cand with the padding at track 0 (for lookups; padded pairs end up NaN)."""
        return np.where(self.cand >= 0, self.cand, 0)

    @cached_property
    def values(self) -> dict:
        """{source: (n, M) its score of each candidate, NaN where it says nothing}."""
        return {name: sc.lookup(self.cand) for name, sc in self.scored.items()}

    def seeded(self, v: np.ndarray) -> np.ndarray:
        """v, NaN for cases without seeds (a seed-based source has nothing to say of them)."""
        return np.where(self.has[:, None], v, np.nan)


def _score(source: str):
    return lambda p: p.seeded(p.values[source])


def _relative(source: str, how: str):
    """The score against the case's best: its gap (score - best) or its share (score / best)."""
    def f(p: Pairs) -> np.ndarray:
        val, best = p.values[source], p.scored[source].best[:, None]
        rel = (val - best) if how == "gap" else val / np.maximum(best, 1e-12)
        return p.seeded(np.where(np.isfinite(val), rel, np.nan))
    return f


def _rank(source: str):
    """log(1 + position) in the source's list; a candidate it scores but did not list gets the
    list's length."""
    def f(p: Pairs) -> np.ndarray:
        pos = _position(p.scored[source].top, p.cand, p.src.graph.num_tracks)
        return p.seeded(np.where(np.isfinite(p.values[source]), np.log1p(pos), np.nan))
    return f


def _static(name: str):
    return lambda p: p.src.static[name][p.c]


# The ranker's features, by name: each a function of a chunk's Pairs giving (n, M) values (or
# (n, 1), broadcast). The order is the columns of Block.x and of the booster; a booster fitted on
# another list is refused (recommend/ranker.py load_booster). Adding a feature is one line here.
FEATURES = {
    "lightgcn_score": _score("lightgcn"),
    "lightgcn_gap": _relative("lightgcn", "gap"),          # distance to the case's best score
    "lightgcn_rank": _rank("lightgcn"),
    "cooccurrence_score": _score("cooccurrence"),          # cosine co-occurrence with the seeds
    "cooccurrence_share": _relative("cooccurrence", "share"),   # as a share of the case's best
    "cooccurrence_rank": _rank("cooccurrence"),
    "rp3beta_score": _score("rp3beta"),                    # RP3beta's walk from the seeds
    "rp3beta_share": _relative("rp3beta", "share"),
    "rp3beta_rank": _rank("rp3beta"),
    "popularity": _static("popularity"),                   # log(1 + train playlists holding it)
    "recent_10": _static("recent_10"),                     # the same among the newest 10% of them
    "recent_25": _static("recent_25"),                     # ... and the newest 25%
    "first_seen": _static("first_seen"),                   # time quantile of its first train playlist
    "mean_time": _static("mean_time"),                     # ... and of the average one
    "title_share": lambda p: _title_share(p.title_share, p.c),  # share of same-title playlists holding it
    "num_seeds": lambda p: np.log1p([len(s) for s in p.seeds])[:, None],
    "has_title": lambda p: np.array([nm is not None for nm in p.names], np.float32)[:, None],
    "artist_share": lambda p: _share(p.seeds, p.src.artist_of, p.c),   # share of the seeds by its artist
    "album_share": lambda p: _share(p.seeds, p.src.album_of, p.c),     # ... on its album
    "embedded": lambda p: (p.c < p.src.scorer.num_tracks).astype(np.float32),  # LightGCN has a vector
    "sources": lambda p: _proposals(p.cand, p.lists),     # how many sources proposed it
}
FEATURE_NAMES = list(FEATURES)
COL = {name: j for j, name in enumerate(FEATURES)}


@dataclass
class Block:
    cand: np.ndarray      # (n, M) int64 candidate track_idx, -1 = padding
    x: np.ndarray         # (n, M, F) float32 features, NaN where a source says nothing
    fallback: np.ndarray  # (n, k) int64: the title model's order (popularity without a title),
                          # to fill a list of fewer than k candidates


class Sources:
    """Everything the candidate features are computed from (all fitted on train playlists).
    scorer: LightGCN (recommend.recommenders.LightGCNRecommender, over its embedded tracks);
    cooccurrence: a fitted CoOccurrence (None: fitted here); rp3beta: a fitted RP3Beta over the catalogue, or
    None (then it proposes nothing)."""

    def __init__(self, graph: Graph, artist_of: np.ndarray, album_of: np.ndarray,
                 modified_at: np.ndarray, scorer, title_model: TitleModel, rp3beta=None,
                 cooccurrence: CoOccurrence | None = None, k: int = 500, per_source: int = 200):
        self.graph, self.k, self.per_source = graph, k, per_source
        self.artist_of, self.album_of = artist_of, album_of
        self.signals = TrackSignals(graph, modified_at)
        self.cooccurrence = cooccurrence if cooccurrence is not None else CoOccurrence().fit(graph)
        self.scorer, self.titles, self.rp3beta = scorer, title_model, rp3beta
        s = self.signals
        # the per-track features, computed once: {name: (T,) float32}
        self.static = {name: v.astype(np.float32) for name, v in (
            ("popularity", np.log1p(s.pop)), ("recent_10", np.log1p(s.recent[0])),
            ("recent_25", np.log1p(s.recent[1])), ("first_seen", s.first_seen), ("mean_time", s.mean_time))}

    def scored(self, seeds: list[np.ndarray], seed_keys: np.ndarray, has: np.ndarray) -> dict:
        """{source: Scored} of the seed-based sources for one chunk of cases. LightGCN scores its
        embedded tracks densely; co-occurrence and RP3beta stay sparse (only the tracks the seeds
        reach score above 0), so a chunk costs its seeds' neighbourhoods, not the catalogue."""
        T = self.graph.num_tracks
        reach = has & self.scorer.reach(seeds)           # an embedded seed: a LightGCN query
        out = {"lightgcn": _dense(self.scorer.scores(seeds).float(), seed_keys, T, self.k, reach),
               "cooccurrence": _sparse(self.cooccurrence.sparse_scores(seeds), seed_keys, self.per_source, has)}
        out["rp3beta"] = (_sparse(self.rp3beta.sparse_scores(seeds), seed_keys, self.per_source, has)
                      if self.rp3beta is not None else _silent(len(seeds), self.per_source))
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
        pairs = Pairs(self, cand, seeds, names, has, scored, lists, title_share)
        x = np.empty((n, cand.shape[1], len(FEATURES)), np.float32)
        for j, feature in enumerate(FEATURES.values()):
            x[..., j] = feature(pairs)
        x[cand < 0] = np.nan
        return Block(cand, x, self.titles.rank(seeds, names, self.k)[0])

    def _title(self, names: list, m: int) -> tuple[np.ndarray, list]:
        """(n, m) top tracks of each case's title (the title model's order; -1 padded), and per
        case None or the title's (tracks ascending, shares)."""
        top = np.full((len(names), m), -1, np.int64)
        shares = []
        tm = self.titles
        for i, name in enumerate(names):
            t = tm.title_id.get(normalize_title(name)) if name else None
            if t is None:
                shares.append(None)
                continue
            best = tm.key_track[tm.top(name, m)]
            top[i, :len(best)] = best
            lo, hi = tm.starts[t], tm.starts[t + 1]
            shares.append((tm.key_track[lo:hi], tm.key_share[lo:hi]))   # tracks ascending within a title
        return top, shares


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
    and says nothing of the rest, nor anything of the cases `has` marks False (no query)."""
    W = s.shape[1]
    rows, cols = seed_keys // T, seed_keys % T
    inside = cols < W
    s[torch.from_numpy(rows[inside]), torch.from_numpy(cols[inside])] = -torch.inf
    v, top = select(s, min(size, W))
    top[~torch.from_numpy(has)[:, None] | ~torch.isfinite(v)] = -1   # no query, or nothing to say
    best = np.where(has, s.max(1).values.numpy(), np.nan)

    def lookup(cand: np.ndarray) -> np.ndarray:
        ok = (cand >= 0) & (cand < W) & has[:, None]
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


def _title_share(title_share: list, c: np.ndarray) -> np.ndarray:
    """(n, M) share of the case's same-title train playlists that hold each candidate (0 without
    a known title)."""
    out = np.zeros(c.shape, np.float32)
    for i, ts in enumerate(title_share):
        if ts is not None:
            tr, sh = ts
            pos = np.searchsorted(tr, c[i]).clip(max=len(tr) - 1)
            out[i] = np.where(tr[pos] == c[i], sh[pos], 0.0)
    return out
