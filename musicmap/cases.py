"""How evaluation cases of graph playlists are cut: the rule build-graph (spark_jobs/graph.py) and
its plain-Python reference (bench/reference_graph.py) both follow.

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

Every product stays below 2^63, so a Spark long computes exactly what Python does.
"""
from __future__ import annotations

MOD = 2_147_483_647
MULT = 2_654_435_761
SEED_MULT = 40_503
SALT_MULT = 2_246_822_519
PLAYLIST, TRACK, HALF = 1, 2, 3          # salts
CATEGORY = "graph_holdout"
SPLITS = ("graph_val", "graph_test")


def mix(x: int, seed: int, salt: int) -> int:
    return ((x % MOD) * MULT + seed * SEED_MULT + salt * SALT_MULT) % MOD


def held_out(pid: int, pos: int, seed: int, playlists: float, tracks: float) -> bool:
    """Whether the track at `pos` of train playlist `pid` is held out (its first occurrence)."""
    return mix(pid, seed, PLAYLIST) < playlists * MOD and mix(256 * pid + pos, seed, TRACK) < tracks * MOD


def split_of(pid: int, seed: int) -> str:
    """graph_val or graph_test: which half a graph playlist's case belongs to."""
    return SPLITS[mix(pid, seed, HALF) % 2]
