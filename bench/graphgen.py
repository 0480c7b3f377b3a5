"""Write a committed train graph at a given scale straight into the graph contract, for benchmarks.

    python -m bench.graphgen --root bench/out/seed --scale seed      # ~315K playlists, ~177K tracks, ~15.5M edges
    python -m bench.graphgen --root bench/out/small --scale small    # about 1/20 of that

Why a shortcut: the real path (musicmap synth -> spark_jobs/build_graph.py) at the seed system's
scale means ~16M track occurrences of MPD JSON through local Spark, far too slow for a 2-core
benchmark machine. This script skips the JSON and Spark and writes what build_graph would write,
with the same schemas (musicmap.schemas) under a musicmap.storage.StageWriter version folder and
the same commit keys the trainer reads ("graph_playlists", "tracks"; also "edges"):

    graph/<version>/edges/      EDGES      train edges, sorted by (playlist_idx, track_idx)
    graph/<version>/tracks/     TRACKS     catalogue: track_idx dense, by train playlist count desc
    graph/<version>/playlists/  PLAYLISTS  train graph playlists (0..P-1), then val, then test
    graph/<version>/eval/       EVAL       "seed_half" cases of val and test playlists
    graph/<version>/stats.json, graph/_SUCCESS

The data has structure, so that validation NDCG means something: the catalogue is split into ~24
communities (sizes ~ 1/c^0.6), each made of artists (runs of ~7 tracks) with Zipf popularity
inside the community. A playlist draws 80% of its tracks from its main community, 15% from a
second one and 5% from the whole catalogue, and a third of its slots take another track of the
previous slot's artist (the same recipe as musicmap.synth, vectorised). The catalogue filter is
the pipeline's: tracks in >= 5 train playlists; train playlists left with < 5 tracks leave the
graph. Validation and test playlists come after the train ones in time (same distribution) and
are never used for the catalogue. Their cases follow the seed system's protocol: the first half
of the playlist (in order) as seeds (in-catalogue seeds as track_idx), the rest as holdout URIs
(out-of-catalogue ones kept, they count as misses).

Everything is vectorised numpy; the seed scale takes well under a minute. The catalogue size is
solved for so that the catalogue after the filter lands near the target track count.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from math import factorial

import numpy as np
import pyarrow as pa

from musicmap import mpd, schemas, storage

# The seed system's scale: its 31.5% subset of the MPD after its filters.
SCALES = {
    "seed": dict(playlists=315_000, tracks=177_000, edges=15_500_000, val=4000, test=4000),
    "small": dict(playlists=15_750, tracks=8_850, edges=775_000, val=2000, test=1000),
    "tiny": dict(playlists=2_000, tracks=1_500, edges=60_000, val=300, test=100),
}
MIN_PLAYLISTS = 5   # graph.min_playlists
MIN_TRACKS = 5      # graph.min_tracks
FOCUS, SECOND = 0.80, 0.15   # main community share, second community share (rest: whole catalogue)
FOLLOW_ARTIST = 0.33         # share of slots that take another track of the previous slot's artist
END_TS = 1509494400


class Catalogue:
    """Tracks 0..T0-1 grouped by community, artists as consecutive runs, popularity per track."""

    def __init__(self, n_tracks: int, communities: int, exponent: float, rng: np.random.Generator):
        w = 1.0 / np.arange(1, communities + 1) ** 0.6
        self.community_weight = w / w.sum()
        sizes = np.maximum(50, np.round(self.community_weight * n_tracks)).astype(np.int64)
        self.start = np.concatenate([[0], np.cumsum(sizes)])
        self.T = int(self.start[-1])
        self.community = np.repeat(np.arange(communities), sizes)
        # artists: runs of 1 + geometric(1/7) tracks, not crossing a community boundary
        runs = 1 + rng.geometric(1 / 7, self.T)
        bounds = np.unique(np.concatenate([np.cumsum(runs)[np.cumsum(runs) < self.T], self.start[:-1]]))
        self.artist_start = bounds
        self.artist_len = np.diff(np.concatenate([bounds, [self.T]]))
        self.artist_of = np.repeat(np.arange(len(bounds)), self.artist_len)
        # popularity: Zipf over the community's artists (random ranks) x Zipf over the artist's tracks
        pop = np.empty(self.T)
        art_comm = self.community[bounds]
        rank = np.empty(len(bounds))
        for c in range(communities):
            a = np.nonzero(art_comm == c)[0]
            rank[a] = rng.permutation(len(a)) + 1
        within = np.arange(self.T) - bounds[self.artist_of] + 1
        pop = rank[self.artist_of] ** -exponent * within ** -1.2
        self.popularity = pop
        self.cdf = []
        for c in range(communities):
            cdf = np.cumsum(pop[self.start[c]:self.start[c + 1]])
            self.cdf.append(cdf / cdf[-1])

    def track_probability(self) -> np.ndarray:
        """Probability that one slot draws each track (ignoring dedup inside a playlist)."""
        p = np.empty(self.T)
        for c in range(len(self.cdf)):
            lo, hi = self.start[c], self.start[c + 1]
            p[lo:hi] = np.diff(np.concatenate([[0.0], self.cdf[c]])) * self.community_weight[c]
        # a FOLLOW_ARTIST share of slots take a uniform track of the previous slot's artist
        per_artist = np.bincount(self.artist_of, weights=p) / self.artist_len
        return (1 - FOLLOW_ARTIST) * p + FOLLOW_ARTIST * per_artist[self.artist_of]

    def _alias(self):
        """Walker/Vose alias tables of each community's popularity (O(1) draws)."""
        if getattr(self, "prob", None) is not None:
            return
        prob = np.empty(self.T)
        alias = np.arange(self.T)
        for c in range(len(self.cdf)):
            lo, hi = int(self.start[c]), int(self.start[c + 1])
            q = (np.diff(np.concatenate([[0.0], self.cdf[c]])) * (hi - lo)).tolist()
            small = [i for i, x in enumerate(q) if x < 1.0]
            large = [i for i, x in enumerate(q) if x >= 1.0]
            pr, al = [1.0] * len(q), list(range(len(q)))
            while small and large:
                sm, lg = small.pop(), large[-1]
                pr[sm], al[sm] = q[sm], lg
                q[lg] -= 1.0 - q[sm]
                if q[lg] < 1.0:
                    small.append(large.pop())
            prob[lo:hi] = pr
            alias[lo:hi] = np.asarray(al) + lo
        self.prob, self.alias = prob, alias

    def sample(self, comm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One track per entry of `comm`, by popularity within that community."""
        self._alias()
        size = np.diff(self.start)
        t = self.start[comm] + (rng.random(len(comm)) * size[comm]).astype(np.int64)
        return np.where(rng.random(len(comm)) < self.prob[t], t, self.alias[t])


def solve_catalog(target_tracks: int, draws: float, communities: int, exponent: float, random_seed: int) -> int:
    """Catalogue size whose expected catalogue (tracks drawn in >= MIN_PLAYLISTS train playlists,
    Poisson approximation) is about target_tracks."""

    def expected_catalogue(t0: int) -> float:
        p = Catalogue(t0, communities, exponent, np.random.default_rng([random_seed, 1])).track_probability()
        lam = draws * p
        below = sum(np.exp(-lam) * lam ** k / factorial(k) for k in range(MIN_PLAYLISTS))
        return float((1 - below).sum())

    lo, hi = target_tracks, target_tracks * 8
    for _ in range(14):
        mid = (lo + hi) // 2
        if expected_catalogue(mid) < target_tracks:
            lo = mid
        else:
            hi = mid
    return hi


def lengths(n: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Playlist lengths: the MPD's two-mode shape (short ~21, long ~90), rescaled to `mean`."""
    short = rng.random(n) < 0.4
    x = np.where(short, np.exp(rng.normal(np.log(21), 0.27, n)), np.exp(rng.normal(np.log(90), 0.62, n)))
    x = x * mean / x.mean()
    return np.clip(np.round(x), MIN_TRACKS + 1, 250).astype(np.int64)


def playlists(cat: Catalogue, n: int, mean_len: float, rng: np.random.Generator):
    """(owner, track) of n playlists in playlist order, unique tracks per playlist, and lengths."""
    L = lengths(n, mean_len, rng)
    C = len(cat.cdf)
    primary = rng.choice(C, n, p=cat.community_weight)
    secondary = rng.choice(C, n, p=cat.community_weight)
    draw = np.minimum((L * 1.15).astype(np.int64) + 3, 511)   # oversample, keep the first L unique
    owner = np.repeat(np.arange(n), draw)
    start = np.concatenate([[0], np.cumsum(draw)[:-1]])
    slot = np.arange(len(owner)) - start[owner]
    u = rng.random(len(owner))
    comm = np.where(u < FOCUS, primary[owner], secondary[owner])
    glob = u >= FOCUS + SECOND
    comm[glob] = rng.choice(C, int(glob.sum()), p=cat.community_weight)
    tracks = cat.sample(comm, rng)
    follow = rng.random(len(tracks)) < FOLLOW_ARTIST
    follow[start] = False
    idx = np.nonzero(follow)[0]
    a = cat.artist_of[tracks[idx - 1]]
    tracks[idx] = cat.artist_start[a] + (rng.random(len(idx)) * cat.artist_len[a]).astype(np.int64)
    # first occurrence of each (owner, track): sort packed (owner, track, slot) keys
    tb = max(1, int(cat.T - 1).bit_length())
    assert int(n).bit_length() + tb + 9 < 63
    key = np.sort(((owner << tb | tracks) << 9) | slot)
    pair = key >> 9
    first = np.concatenate([[True], pair[1:] != pair[:-1]])
    key = key[first]
    owner, tracks, slot = key >> (9 + tb), (key >> 9) & ((1 << tb) - 1), key & 511
    # back to slot order inside each playlist, then the first L per playlist
    key = np.sort(((owner << 9 | slot) << tb) | tracks)
    owner, tracks = key >> (9 + tb), key & ((1 << tb) - 1)
    ostart = np.searchsorted(owner, np.arange(n))
    rank = np.arange(len(owner)) - ostart[owner]
    keep = rank < L[owner]
    return owner[keep], tracks[keep]


def _turi(t: np.ndarray) -> list[str]:   # catalogue track ids -> URIs
    return [f"spotify:track:bench{x:017d}" for x in t.tolist()]


def _catalogue(owner, track, playlists_n: int, T_cat: int) -> dict:
    """The catalogue of the train playlists (>= MIN_PLAYLISTS of them), ids by count desc."""
    is_train = owner < playlists_n
    cnt = np.bincount(track[is_train], minlength=T_cat)
    in_catalogue = cnt >= MIN_PLAYLISTS
    catalogue = np.nonzero(in_catalogue)[0]
    catalogue = catalogue[np.lexsort((catalogue, -cnt[catalogue]))]          # by train playlist count desc
    idx_of = np.full(T_cat, -1, np.int64)
    idx_of[catalogue] = np.arange(len(catalogue))
    return {"is_train": is_train, "cnt": cnt, "in_catalogue": in_catalogue, "catalogue": catalogue, "idx_of": idx_of}


def _edges(owner, track, v: dict, playlists_n: int) -> dict:
    """Train edges sorted by (playlist, track); playlists left with < MIN_TRACKS catalogue tracks
    leave the graph."""
    e = v["is_train"] & v["in_catalogue"][track]
    ep, et = owner[e], track[e]
    epos = (np.arange(len(owner)) - np.searchsorted(owner, owner))[e]   # position in the playlist
    in_graph = np.bincount(ep, minlength=playlists_n) >= MIN_TRACKS
    pl_idx = np.full(playlists_n, -1, np.int64)
    pl_idx[in_graph] = np.arange(int(in_graph.sum()))
    m = in_graph[ep]
    ep, et, epos = pl_idx[ep[m]], v["idx_of"][et[m]], epos[m]
    tb = max(1, int(len(v["catalogue"]) - 1).bit_length())
    key = np.sort(((ep << tb | et) << 9) | np.minimum(epos, 511))   # by (playlist, track)
    return {"ep": key >> (9 + tb), "et": (key >> 9) & ((1 << tb) - 1), "epos": key & 511, "in_graph": in_graph}


def _write_edges(out, e: dict, weight: np.ndarray, rows_per_part: int = 4_000_000) -> None:
    E = len(e["ep"])
    for i in range(max(1, math.ceil(E / rows_per_part))):
        s = slice(i * rows_per_part, (i + 1) * rows_per_part)
        storage.write_parquet(pa.table({
            "playlist_idx": pa.array(e["ep"][s], pa.int32()), "track_idx": pa.array(e["et"][s], pa.int32()),
            "pos": pa.array(np.minimum(e["epos"][s], 32767), pa.int16()), "weight": pa.array(weight[s], pa.float32()),
        }, schema=schemas.EDGES), out.path("edges", f"part-{i:05d}.parquet"))


def _write_tracks(out, cat, v: dict) -> None:
    catalogue = v["catalogue"]
    storage.write_parquet(pa.table({
        "track_idx": pa.array(np.arange(len(catalogue)), pa.int32()), "track_uri": _turi(catalogue),
        "track_name": [f"track {x}" for x in catalogue.tolist()],
        "artist_uri": [f"spotify:artist:bench{x:016d}" for x in cat.artist_of[catalogue].tolist()],
        "artist_name": [f"artist {x}" for x in cat.artist_of[catalogue].tolist()],
        "album_uri": [f"spotify:album:bench{x:017d}" for x in (catalogue // 4).tolist()],
        "album_name": [f"album {x}" for x in (catalogue // 4).tolist()],
        "duration_ms": pa.array(np.full(len(catalogue), 210_000), pa.int64()),
        "train_playlists": pa.array(v["cnt"][catalogue], pa.int32()),
    }, schema=schemas.TRACKS), out.path("tracks", "part-00000.parquet"))


def _write_playlists(out, owner, in_graph, attrs: dict, playlists_n: int, val_n: int) -> None:
    total = len(attrs["followers"])
    pl_rows = np.concatenate([np.nonzero(in_graph)[0], np.arange(playlists_n, total)])
    split = np.where(pl_rows < playlists_n, "train", np.where(pl_rows < playlists_n + val_n, "val", "test"))
    storage.write_parquet(pa.table({
        "playlist_idx": pa.array(np.arange(len(pl_rows)), pa.int32()), "pid": pa.array(pl_rows.astype(np.int64)),
        "name": [f"playlist {c}" for c in pl_rows.tolist()], "modified_at": pa.array(attrs["modified_at"][pl_rows]),
        "num_followers": pa.array(attrs["followers"][pl_rows]), "num_edits": pa.array(attrs["edits"][pl_rows]),
        "num_tracks": pa.array(np.bincount(owner, minlength=total)[pl_rows], pa.int32()), "split": split.tolist(),
    }, schema=schemas.PLAYLISTS), out.path("playlists", "part-00000.parquet"))


def _write_eval(out, owner, track, cat, idx_of, playlists_n: int, val_n: int, total: int) -> tuple[int, int]:
    """seed_half cases (the first half of each val/test playlist as seeds): (holdouts, out of the
    catalogue)."""
    ev = np.arange(playlists_n, total)
    sel = owner >= playlists_n
    eo, etr = owner[sel], track[sel]
    es, ee = np.searchsorted(eo, ev), np.searchsorted(eo, ev, side="right")
    rows = {f: [] for f in schemas.EVAL.names}
    for p, lo, hi in zip(ev.tolist(), es.tolist(), ee.tolist()):
        tr, n = etr[lo:hi], hi - lo
        seeds, hold = tr[:n // 2], tr[n // 2:]          # tracks are unique per playlist
        sidx = idx_of[seeds]
        for f, x in (("pid", p), ("split", "val" if p < playlists_n + val_n else "test"),
                     ("category", mpd.SEED_PROTOCOL), ("name", f"playlist {p}"), ("num_tracks", n),
                     ("seed_idx", sidx[sidx >= 0].tolist()), ("seed_uris", _turi(seeds)), ("holdout_uris", _turi(hold)),
                     ("holdout_artist_uris", [f"spotify:artist:bench{x:016d}" for x in cat.artist_of[hold].tolist()])):
            rows[f].append(x)
    storage.write_parquet(pa.table(rows, schema=schemas.EVAL), out.path("eval", "part-00000.parquet"))
    oov = sum(int((idx_of[etr[lo:hi][(hi - lo) // 2:]] < 0).sum()) for lo, hi in zip(es.tolist(), ee.tolist()))
    return sum(len(r) for r in rows["holdout_uris"]), oov


def generate(root: str, playlists_n: int, tracks_n: int, edges_n: int, val_n: int, test_n: int,
             communities: int = 24, exponent: float = 1.05, random_seed: int = 0, log=print) -> dict:
    t0 = time.time()
    rng = np.random.default_rng(random_seed)
    # calibrated: dedup inside a playlist and the catalogue filter lose ~7% of the slots, and the
    # Poisson estimate of the catalogue is ~5% low (dedup sends repeated draws to the tail)
    mean_len = edges_n / playlists_n * 1.07
    total = playlists_n + val_n + test_n
    # draws of train slots, for sizing the catalogue so the catalogue lands near tracks_n
    t_cat = solve_catalog(int(tracks_n * 0.95), mean_len * playlists_n, communities, exponent, random_seed)
    cat = Catalogue(t_cat, communities, exponent, np.random.default_rng([random_seed, 1]))
    owner, track = playlists(cat, total, mean_len, rng)
    log(f"catalogue {cat.T:,} tracks, {communities} communities; {len(owner):,} occurrences "
        f"in {total:,} playlists ({time.time() - t0:.1f}s)")
    v = _catalogue(owner, track, playlists_n, cat.T)   # split by time: first train, then val, then test
    e = _edges(owner, track, v, playlists_n)
    T, P, E = len(v["catalogue"]), int(e["in_graph"].sum()), len(e["ep"])
    # playlist attributes (modified_at increases with the playlist number: time order)
    attrs = {"followers": np.maximum(1, rng.geometric(0.3, total)), "edits": np.maximum(1, rng.geometric(0.15, total)),
             "modified_at": (END_TS - (total - np.arange(total)) * 60).astype(np.int64)}
    own_of_edge = np.nonzero(e["in_graph"])[0][e["ep"]]
    weight = (1.0 / (1.0 + 0.5 * e["epos"] / 100.0) * (1.0 + 0.1 * np.log(attrs["followers"][own_of_edge]))
              * (1.0 + 0.05 * np.log(attrs["edits"][own_of_edge]))).astype(np.float32)
    out = storage.StageWriter(storage.join(root, "graph"))
    _write_edges(out, e, weight)
    _write_tracks(out, cat, v)
    _write_playlists(out, owner, e["in_graph"], attrs, playlists_n, val_n)
    holdouts, oov = _write_eval(out, owner, track, cat, v["idx_of"], playlists_n, val_n, total)
    storage.write_parquet(pa.Table.from_batches([], schema=schemas.QUARANTINE), out.path("quarantine", "part-00000.parquet"))
    stats = {"generator": "bench/graphgen.py", "random_seed": random_seed, "communities": communities,
             "catalog_tracks": cat.T, "graph": {"playlists": P, "tracks": T, "interactions": E,
                                                "mean_playlist_degree": round(E / max(P, 1), 2)},
             "eval": {"val": val_n, "test": test_n, "holdouts": holdouts, "oov_holdouts": oov},
             "seconds": round(time.time() - t0, 1)}
    storage.write_json(out.path("stats.json"), stats)
    out.commit({"stage": "graph", "input": "bench/graphgen.py", "tracks": T, "graph_playlists": P,
                "edges": E, "config": {"graph": {"min_playlists": MIN_PLAYLISTS, "min_tracks": MIN_TRACKS}},
                "generator": {"scale": [playlists_n, tracks_n, edges_n], "random_seed": random_seed}})
    log(f"graph committed at {storage.join(root, 'graph')}: {P:,} playlists, {T:,} tracks, {E:,} edges, "
        f"{val_n:,} val + {test_n:,} test cases ({oov:,}/{holdouts:,} holdouts out of catalogue) "
        f"in {time.time() - t0:.1f}s")
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="storage root; the graph goes to <root>/graph")
    ap.add_argument("--scale", choices=sorted(SCALES), default="small")
    ap.add_argument("--playlists", type=int, help="override the scale's train playlists")
    ap.add_argument("--tracks", type=int, help="override the scale's catalogue size (approximate)")
    ap.add_argument("--edges", type=int, help="override the scale's train edges (approximate)")
    ap.add_argument("--val", type=int, help="validation cases")
    ap.add_argument("--test", type=int, help="test cases")
    ap.add_argument("--communities", type=int, default=24)
    ap.add_argument("--random-seed", type=int, default=0)
    a = ap.parse_args(argv)
    s = dict(SCALES[a.scale])
    for k in ("playlists", "tracks", "edges", "val", "test"):
        if getattr(a, k) is not None:
            s[k] = getattr(a, k)
    generate(a.root, s["playlists"], s["tracks"], s["edges"], s["val"], s["test"],
             communities=a.communities, random_seed=a.random_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
