"""How evaluation cases are cut, once for every stage that cuts them: build-graph
(musicmap/spark_jobs/graph.py), its plain-Python reference (bench/reference_graph.py) and fit-ranker's
extra fitting cases (recommend/fit_ranker.py).

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

import numpy as np

from musicmap import mpd

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


def seed_ids(seed_uris: list[str], vocab) -> list[int]:
    """The seeds' track ids in the catalogue, each once, in order; out-of-catalogue seeds dropped."""
    return list(dict.fromkeys(vocab[u] for u in seed_uris if u in vocab))
