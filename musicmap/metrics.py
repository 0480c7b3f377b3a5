"""Every ranking metric of the project, in one place: training validation, the evaluation report
and the benchmarks all call this module, so a number means the same thing everywhere.

Conventions (shared by all metrics):

* Items are hashable: track URIs or integer ids. ``G`` is the *set* of unique held-out tracks of a
  case (duplicates in ``holdouts`` collapse). ``R`` is the ranked recommendation list after
  removing ``-1`` padding, dropping repeats (the first occurrence keeps its rank) and truncating
  to ``K`` (500 by default). Ranks are 1-based: ``R[1]`` is the top item, ``R[1:n]`` the first n.
* A held-out track outside the catalogue is still a member of ``G`` (it counts in |G|)
  and simply never matches. Give such tracks distinct identities (their URIs, or distinct ids):
  ``holdouts`` is taken as is, so several tracks all mapped to one placeholder id count once.
* Empty ``G``: every metric is undefined. The functions return ``None`` and :func:`aggregate`
  skips the case and counts it in ``skipped_empty``.
* NDCG uses the RecSys Challenge 2018 organisers' code: discount ``1 / log2(i + 1)`` from rank 1,
  and an ideal DCG over ``min(|G|, K)`` hits where ``K`` is the list length *asked for*.

The formulas are also in :data:`DEFINITIONS`, which the evaluation report prints and saves.
Only numpy is used.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

K_DEFAULT = 500          # length of the recommendation list in the challenge
K_SMALL_DEFAULT = 20     # cut-off of precision@k / hit_rate@k / recall@k
CLICKS_NO_HIT = 51       # clicks when no track of G is in R (one more than the 50 pages of 10)
ARTIST_CREDIT = 0.25     # partial credit per matching artist in r_precision_artist
PAD = -1                 # padding value of integer rankings; never an item

DEFINITIONS: dict[str, str] = {
    "common": (
        "G = set of unique held-out tracks of a case (duplicates collapse; out-of-catalogue "
        "holdouts count in |G| and never match). R = ranked recommendations with -1 padding "
        "removed, repeats dropped (first occurrence keeps its rank), truncated to K = 500. "
        "Ranks start at 1; R[1:n] = the first n items. rel_i = 1 if R[i] in G else 0. "
        "Empty G: metric undefined, the case is skipped and counted in skipped_empty. "
        "Reported values are means over cases."
    ),
    "r_precision": "R-precision = |G ∩ R[1:|G|]| / |G|.",
    "r_precision_artist": (
        "Artist R-precision (challenge partial credit) = (H + 0.25 * A) / |G|, where "
        "T = R[1:|G|], H = |T ∩ G| (track hits), and A = number of distinct artists a such that "
        "a is the artist of some item of T that is NOT in G, and a is the artist of some track "
        "of G. A track hit earns 1 and never an extra 0.25; several non-hit items by the same "
        "artist of G earn 0.25 once; a non-hit item by the artist of a hit track still earns 0.25 "
        "(its artist is an artist of G)."
    ),
    "ndcg": (
        "NDCG = DCG / IDCG, DCG = Σ_{i=1..|R|} rel_i / log2(i + 1), "
        "IDCG = Σ_{i=1..min(|G|, K)} 1 / log2(i + 1) with K the list length asked for (500), "
        "not the length returned (the RecSys Challenge 2018 organisers' code; a list shorter "
        "than K is not rewarded)."
    ),
    "clicks": (
        "Recommended-songs clicks = floor((rank of the first item of R in G - 1) / 10), "
        "ranks from 1; 51 when no item of G is in R (R capped at K = 500). Lower is better."
    ),
    "precision@k": "precision@k = |R[1:k] ∩ G| / k (divided by k even if R is shorter).",
    "hit_rate@k": "hit_rate@k = 1 if some item of R[1:k] is in G, else 0.",
    "recall@k": "recall@k = |R[1:k] ∩ G| / |G|.",
}


# --------------------------------------------------------------------------- preparation

def _holdout_set(holdouts: Iterable[Any]) -> set:
    """G: the set of unique held-out items (numpy scalars become Python values)."""
    if isinstance(holdouts, np.ndarray):
        holdouts = holdouts.ravel().tolist()
    return set(holdouts)


def _unique_ranked(ranked: Sequence[Any], k: int) -> tuple[list, list[int]]:
    """R and the position in ``ranked`` of each of its items.

    Drops ``-1`` padding, keeps the first occurrence of repeated items, truncates to ``k``.
    Integer numpy arrays take a vectorised path; anything else a single pass with a dict.
    """
    if isinstance(ranked, np.ndarray) and ranked.dtype.kind in "iu":
        flat = ranked.ravel()
        pos = np.flatnonzero(flat != PAD)
        _, first = np.unique(flat[pos], return_index=True)
        keep = pos[np.sort(first)][:k]
        return flat[keep].tolist(), keep.tolist()
    if isinstance(ranked, np.ndarray):
        ranked = ranked.ravel().tolist()
    seen: dict[Any, int] = {}
    for i, item in enumerate(ranked):
        if len(seen) >= k:
            break
        if isinstance(item, (int, np.integer)) and item == PAD:
            continue
        if item not in seen:
            seen[item] = i
    return list(seen), list(seen.values())


def _hits(items: list, g: set) -> np.ndarray:
    """rel_i for i = 1..|R| as a float array (1.0 where R[i] is in G)."""
    return np.fromiter((item in g for item in items), dtype=np.float64, count=len(items))


@lru_cache(maxsize=8)
def _discounts(n: int) -> np.ndarray:
    """1 / log2(i + 1) for i = 1..n (read-only, cached)."""
    d = 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))
    d.setflags(write=False)
    return d


@lru_cache(maxsize=8)
def _ideal_dcg(n: int) -> np.ndarray:
    """IDCG for 0..n hits: entry m = Σ_{i=1..m} 1 / log2(i + 1) (read-only, cached)."""
    c = np.concatenate(([0.0], np.cumsum(_discounts(n))))
    c.setflags(write=False)
    return c


def _prepare(ranked, holdouts, k: int):
    """(rel vector of R, G, items of R, positions of R in ``ranked``) or None when G is empty."""
    g = _holdout_set(holdouts)
    if not g:
        return None
    items, positions = _unique_ranked(ranked, k)
    return _hits(items, g), g, items, positions


# --------------------------------------------------------------------------- metrics of a rel vector
# rel: rel_i of R (already deduplicated and truncated); n_g: |G|.

def _r_precision(rel: np.ndarray, n_g: int) -> float:
    return float(rel[:n_g].sum()) / n_g


def _ndcg(rel: np.ndarray, n_g: int, k: int) -> float:
    dcg = float(rel @ _discounts(k)[: len(rel)]) if len(rel) else 0.0
    return dcg / float(_ideal_dcg(k)[min(n_g, k)])


def _clicks(rel: np.ndarray) -> int:
    hit_ranks = np.flatnonzero(rel)          # 0-based, so rank - 1
    return int(hit_ranks[0]) // 10 if len(hit_ranks) else CLICKS_NO_HIT


def _precision_at(rel: np.ndarray, k: int) -> float:
    return float(rel[:k].sum()) / k


def _hit_rate_at(rel: np.ndarray, k: int) -> float:
    return 1.0 if rel[:k].any() else 0.0


def _recall_at(rel: np.ndarray, n_g: int, k: int) -> float:
    return float(rel[:k].sum()) / n_g


def _artist_lookup(ranked_artists, items: list, positions: list[int]) -> list:
    """The artist of each item of R. ranked_artists is either a mapping item -> artist (None
    when missing) or a sequence aligned with the original ``ranked`` (same length, padding
    positions included)."""
    if isinstance(ranked_artists, Mapping):
        return [ranked_artists.get(item) for item in items]
    if isinstance(ranked_artists, np.ndarray):
        ranked_artists = ranked_artists.ravel().tolist()
    return [ranked_artists[p] for p in positions]


def _r_precision_artist(rel: np.ndarray, n_g: int, artists_of_r: list, g_artists: set) -> float:
    top = rel[:n_g]
    track_hits = float(top.sum())
    credited = {a for a, r in zip(artists_of_r[:n_g], top) if not r and a in g_artists}
    return (track_hits + ARTIST_CREDIT * len(credited)) / n_g


# --------------------------------------------------------------------------- public, one metric each

def r_precision(ranked, holdouts, k: int = K_DEFAULT) -> float | None:
    """|G ∩ R[1:|G|]| / |G|; ``None`` for empty G."""
    p = _prepare(ranked, holdouts, k)
    return None if p is None else _r_precision(p[0], len(p[1]))


def r_precision_artist(ranked, holdouts, ranked_artists, holdout_artists,
                       k: int = K_DEFAULT) -> float | None:
    """(H + 0.25 * A) / |G|; ``None`` for empty G.

    T = R[1:|G|]; H = |T ∩ G|; A = number of distinct artists of the items of T that are not in
    G and that are the artist of some track of G.

    ``ranked_artists``: a mapping item -> artist, or a sequence aligned with ``ranked`` (same
    length; for integer ids with a track -> artist array ``artist_of``, pass
    ``artist_of[ranked]``; values at padding positions are ignored). ``holdout_artists``: the
    artists of the tracks of G (any iterable; only its set is used).
    """
    p = _prepare(ranked, holdouts, k)
    if p is None:
        return None
    rel, g, items, positions = p
    artists = _artist_lookup(ranked_artists, items, positions)
    return _r_precision_artist(rel, len(g), artists, _holdout_set(holdout_artists))


def ndcg(ranked, holdouts, k: int = K_DEFAULT) -> float | None:
    """DCG / IDCG, DCG = Σ_{i=1..|R|} rel_i / log2(i + 1), IDCG = Σ_{i=1..min(|G|, k)} 1 / log2(i + 1).

    ``k`` is the list length asked for: R is truncated to it, and a shorter R is not rewarded
    (IDCG does not shrink with |R|). ``None`` for empty G.
    """
    p = _prepare(ranked, holdouts, k)
    return None if p is None else _ndcg(p[0], len(p[1]), k)


def mean_ndcg(ranked: Sequence, holdouts: Sequence, k: int = K_DEFAULT) -> float:
    """The mean NDCG of ranked lists against their holdouts, cases without holdouts left out
    (0.0 when none is left): what validation compares methods and settings by."""
    vals = [v for v in (ndcg(r, h, k) for r, h in zip(ranked, holdouts)) if v is not None]
    return float(np.mean(vals)) if vals else 0.0


def clicks(ranked, holdouts, k: int = K_DEFAULT) -> int | None:
    """floor((rank of first hit - 1) / 10), ranks from 1; 51 if no item of G is in R[1:k].
    Lower is better. ``None`` for empty G."""
    p = _prepare(ranked, holdouts, k)
    return None if p is None else _clicks(p[0])


def precision_at(ranked, holdouts, k: int = K_SMALL_DEFAULT) -> float | None:
    """|R[1:k] ∩ G| / k (divided by k even if R is shorter); ``None`` for empty G."""
    p = _prepare(ranked, holdouts, k)
    return None if p is None else _precision_at(p[0], k)


def hit_rate_at(ranked, holdouts, k: int = K_SMALL_DEFAULT) -> float | None:
    """1.0 if any item of R[1:k] is in G, else 0.0; ``None`` for empty G."""
    p = _prepare(ranked, holdouts, k)
    return None if p is None else _hit_rate_at(p[0], k)


def recall_at(ranked, holdouts, k: int = K_SMALL_DEFAULT) -> float | None:
    """|R[1:k] ∩ G| / |G|; ``None`` for empty G."""
    p = _prepare(ranked, holdouts, k)
    return None if p is None else _recall_at(p[0], len(p[1]), k)


# --------------------------------------------------------------------------- cases and aggregation

def metric_names(k_small: int = K_SMALL_DEFAULT, artists: bool = False) -> list[str]:
    """The keys of a :func:`case_metrics` row, in report order."""
    names = ["r_precision"] + (["r_precision_artist"] if artists else [])
    return names + ["ndcg", "clicks", f"precision@{k_small}", f"hit_rate@{k_small}",
                    f"recall@{k_small}"]


def case_metrics(ranked, holdouts, *, k: int = K_DEFAULT, k_small: int = K_SMALL_DEFAULT,
                 ranked_artists=None, holdout_artists=None) -> dict | None:
    """All metrics of one case, computing R and its rel vector once.

    ``ranked``: items best first (list, tuple or numpy array; ``-1`` padding in integer rankings
    is ignored). ``holdouts``: the held-out tracks (duplicates allowed). ``r_precision_artist``
    is included only when both ``ranked_artists`` and ``holdout_artists`` are given (see
    :func:`r_precision_artist`). Returns ``None`` when there are no holdouts.
    """
    p = _prepare(ranked, holdouts, k)
    if p is None:
        return None
    rel, g, items, positions = p
    n_g = len(g)
    row: dict[str, float | int] = {"r_precision": _r_precision(rel, n_g)}
    if ranked_artists is not None and holdout_artists is not None:
        artists = _artist_lookup(ranked_artists, items, positions)
        row["r_precision_artist"] = _r_precision_artist(
            rel, n_g, artists, _holdout_set(holdout_artists))
    row["ndcg"] = _ndcg(rel, n_g, k)
    row["clicks"] = _clicks(rel)
    row[f"precision@{k_small}"] = _precision_at(rel, k_small)
    row[f"hit_rate@{k_small}"] = _hit_rate_at(rel, k_small)
    row[f"recall@{k_small}"] = _recall_at(rel, n_g, k_small)
    return row


def evaluate_cases(cases: Iterable[Mapping], k: int = K_DEFAULT,
                   k_small: int = K_SMALL_DEFAULT) -> list[dict | None]:
    """:func:`case_metrics` of each case, a mapping with ``ranked`` and ``holdouts`` and
    optionally ``ranked_artists`` and ``holdout_artists``."""
    return [case_metrics(c["ranked"], c["holdouts"], k=k, k_small=k_small,
                         ranked_artists=c.get("ranked_artists"),
                         holdout_artists=c.get("holdout_artists"))
            for c in cases]


def aggregate(rows: Sequence[dict | None], groups: Sequence[Any] | None = None) -> dict:
    """Means of the metrics overall and per group.

    Returns ``{"all": {...}, <group label>: {...}, ...}`` (groups in order of first appearance).
    Each entry has ``cases`` (rows with a result), ``skipped_empty`` (``None`` rows: empty G) and
    the mean of every metric over the rows that carry it (a metric no row carries is left out,
    e.g. everything when all rows of a group were skipped). ``groups`` (e.g. the challenge
    category of each case) is aligned with ``rows``.
    """
    rows = list(rows)
    if groups is not None:
        groups = list(groups)
        if len(groups) != len(rows):
            raise ValueError(f"{len(groups)} group labels for {len(rows)} rows")
        if "all" in groups:
            raise ValueError('"all" is reserved for the overall entry; rename that group')
    members: dict[Any, list[dict | None]] = {"all": rows}
    for row, label in zip(rows, groups or ()):
        members.setdefault(label, []).append(row)
    return {label: _summarise(group_rows) for label, group_rows in members.items()}


def _summarise(rows: list[dict | None]) -> dict:
    done = [r for r in rows if r is not None]
    out: dict[str, float | int] = {"cases": len(done), "skipped_empty": len(rows) - len(done)}
    names: dict[str, None] = {}
    for r in done:
        names.update(dict.fromkeys(r))
    for name in names:
        values = [r[name] for r in done if name in r]
        out[name] = float(np.mean(values))
    return out
