"""Evaluation cases: how they are cut, once for every stage that cuts them (build-graph,
musicmap/spark_jobs/graph.py; its plain-Python reference, tests/reference_graph.py; fit-ranker's
extra fitting cases), which of them are drawn when a split has too many (sample), and how every
stage reads them (load_eval, EvalCases).

A validation or test playlist becomes a challenge case: one of the challenge categories its
length allows, drawn from the random seed and its pid (challenge_case); its first tracks or
random ones (the category says) are the seeds, the rest of its distinct tracks the holdouts
(holdout_positions). fit-ranker cuts more cases from the same playlists (more_cases).

Graph playlists:

A share of the train playlists (graph.holdout_playlists) keep their place in the graph but lose a
share of their tracks (graph.holdout_tracks): those tracks never reach the edges or the catalogue's
counts, and become the playlist's evaluation case (category graph_holdout, split graph_val or
graph_test, half each), the rest of its tracks its seeds. They measure what recommend writes for
graph playlists, the batch job's main output.

The choice is integer arithmetic on the pid and the track's position, so that Spark columns and
plain Python make the same one (no language's own hash):

    mix(x, seed, salt) = ((x mod M) * MULT + seed * SEED_MULT + salt * SALT_MULT) mod M,  M = 2^31 - 1
    held out   <=>  mix(pid, seed, 1) < holdout_playlists * M  and  mix(256 pid + pos, seed, 2) < holdout_tracks * M
    graph_val  <=>  mix(pid, seed, 3) is even (else graph_test)
    drawn      <=>  mix(pid, seed, 4) among the smallest `max_playlists` of a split (sample)

Every product stays below 2^63, so a Spark long computes exactly what Python does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from musicmap import mpd, schemas, storage

MOD = 2_147_483_647
MULT = 2_654_435_761
SEED_MULT = 40_503
SALT_MULT = 2_246_822_519
PLAYLIST, TRACK, HALF, SAMPLE = 1, 2, 3, 4    # salts
CATEGORY = "graph_holdout"
SPLITS = ("graph_val", "graph_test")


def mix(x: int, random_seed: int, salt: int) -> int:
    return ((x % MOD) * MULT + random_seed * SEED_MULT + salt * SALT_MULT) % MOD


def held_out(pid: int, pos: int, random_seed: int, playlists: float, tracks: float) -> bool:
    """Whether the track at `pos` of train playlist `pid` is held out (its first occurrence)."""
    return mix(pid, random_seed, PLAYLIST) < playlists * MOD and mix(256 * pid + pos, random_seed, TRACK) < tracks * MOD


def sample(pids: np.ndarray, max_playlists: int, random_seed: int) -> np.ndarray:
    """(n,) bool: the rows whose playlist is among the `max_playlists` drawn from the distinct
    pids (0 = all): those with the smallest mix(pid, seed, SAMPLE), ties by pid. The same
    playlists for every method and stage, whatever order the rows come in, and a larger bound
    draws a superset."""
    uniq = np.unique(pids)
    if not max_playlists or len(uniq) <= max_playlists:
        return np.ones(len(pids), bool)
    x = uniq.astype(np.int64)
    score = ((x % MOD) * MULT + random_seed * SEED_MULT + SAMPLE * SALT_MULT) % MOD
    drawn = uniq[np.lexsort((uniq, score))[:max_playlists]]
    return np.isin(pids, drawn)


def split_of(pid: int, random_seed: int) -> str:
    """graph_val or graph_test: which half a graph playlist's case belongs to."""
    return SPLITS[mix(pid, random_seed, HALF) % 2]


# ------------------------------------------------------------------ challenge cases

def eligible(num_tracks: int) -> list:
    """The challenge categories a playlist of num_tracks tracks is long enough for."""
    return [c for c in mpd.CHALLENGE_CATEGORIES if num_tracks >= c.min_tracks]


def seed_positions(category, num_tracks: int, rng: np.random.Generator) -> list[int]:
    """Which positions are the seeds: the first `category.seeds`, or as many random ones."""
    if category.random:
        return sorted(rng.choice(num_tracks, category.seeds, replace=False).tolist())
    return list(range(category.seeds))


def challenge_case(pid: int, num_tracks: int, random_seed: int):
    """(category, seed positions) of a validation or test playlist, or None when it is too short
    for every category."""
    cats = eligible(num_tracks)
    if not cats:
        return None
    rng = np.random.default_rng([random_seed, pid])
    c = cats[int(rng.integers(len(cats)))]
    return c, seed_positions(c, num_tracks, rng)


def more_cases(pid: int, num_tracks: int, random_seed: int, count: int) -> list:
    """Up to `count` (category, seed positions) of one playlist, each category at most once."""
    cats = eligible(num_tracks)
    rng = np.random.default_rng([random_seed, pid])
    return [(c, seed_positions(c, num_tracks, rng)) for c in (rng.permutation(cats)[:count] if cats else [])]


def holdout_positions(uris: list[str], seed_pos: list[int]) -> list[int]:
    """The held-out tracks: the first occurrence of each track that is not a seed."""
    seen, out = {uris[i] for i in seed_pos}, []
    for j, u in enumerate(uris):
        if u not in seen:
            seen.add(u)
            out.append(j)
    return out


def seed_ids(seed_uris: list[str], catalogue) -> list[int]:
    """The seeds' track ids in the catalogue, each once, in order; out-of-catalogue seeds dropped."""
    return list(dict.fromkeys(catalogue[u] for u in seed_uris if u in catalogue))


# ------------------------------------------------------------------ reading the cases

@dataclass
class EvalCases:
    """Evaluation cases of one split, as arrays the scorers use.
    holdout ids: track_idx for in-catalogue holdouts, a distinct negative id (-2, -3, ...) for
    each out-of-catalogue one, so they count in |G| and never match."""
    pid: np.ndarray
    category: list[str]
    name: list[str | None]
    seeds: list[np.ndarray]            # in-catalogue seed track_idx
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
    max_playlists: only the cases of that many of the split's playlists, drawn by sample() (the same ones for every method and stage; 0 = all); `drawn` says how
    many of how many."""
    where = [("split", "=", split)]
    pids = storage.read_parquet(graph.path("eval"), columns=["pid"], schema=schemas.EVAL, filters=where)["pid"]
    pids = pids.to_numpy().astype(np.int64)
    keep = sample(pids, max_playlists, random_seed)
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
