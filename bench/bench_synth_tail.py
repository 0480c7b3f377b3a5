"""The long tail of generated playlists against the real MPD's (issue 22): distinct tracks as the
number of playlists grows, and how many held-out occurrences sit on tracks that are rare in the
training playlists, per size.

    python -m bench.bench_synth_tail                      # 1K, 3K, 20K, 100K playlists
    python -m bench.bench_synth_tail --sizes 3000,20000 --set synth.niche_mass=0.2

Real MPD: 32.8K distinct tracks in 1,000 random playlists and 2.26M in the full 1M, about
476 N^0.613; on a few thousand real playlists split at random, 41% of held-out occurrences were on
tracks in fewer than 5 train playlists and 21% on tracks in none. Playlists are generated in
memory with musicmap.synth's own sampler (no JSON), split 80/10/10 by time as build-graph does
(and at random, as the real measurement was); the held-out occurrences are the test playlists'.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from musicmap import synth
from musicmap.config import load_config


def law(n: int) -> float:
    """The real MPD's distinct tracks for n random playlists."""
    return 476 * n ** 0.613


def generate(n: int, sc) -> list[dict]:
    cat = synth.Catalogue(sc.tracks or synth.default_tracks(n), sc.communities, sc.random_seed, sc.popularity_exponent,
                        sc.niche_share, sc.niche_mass, sc.new_share, sc.trend_days)
    gen = synth.Generator(cat, sc.community_focus)
    rng = np.random.default_rng([sc.random_seed, 2])
    out = []
    for first in range(0, n, synth.SLICE_SIZE):
        out += gen.playlists(first, min(synth.SLICE_SIZE, n - first), rng)
    return out


def shares(train: list[dict], test: list[dict]) -> tuple[float, float]:
    """Share of the test playlists' occurrences on tracks in < 5 train playlists, and in none."""
    counts: dict[int, int] = {}
    for p in train:
        for t in set(p["tracks"].tolist()):
            counts[t] = counts.get(t, 0) + 1
    held = np.array([counts.get(t, 0) for p in test for t in p["tracks"].tolist()])
    return float((held < 5).mean()), float((held == 0).mean())


CAPS = (1, 2, 3, 5)


def caps(train: list[dict]) -> dict:
    """{cap: (train tracks in >= cap train playlists, their share of the train edges)}: what
    LightGCN would embed at model.embed_min_playlists = cap (1 = the whole catalogue)."""
    counts = np.bincount(np.concatenate([np.unique(p["tracks"]) for p in train]))
    edges = counts.sum()
    return {c: (int((counts >= c).sum()), float(counts[counts >= c].sum() / edges)) for c in CAPS}


def measure(n: int, sc) -> dict:
    t0 = time.time()
    pls = generate(n, sc)
    distinct = len({t for p in pls for t in p["tracks"].tolist()})
    by_time = sorted(pls, key=lambda p: (p["modified_at"], p["pid"]))
    cut = int(0.8 * n), int(0.9 * n)
    shuffled = [pls[i] for i in np.random.default_rng(0).permutation(n)]
    return {"playlists": n, "distinct": distinct, "law": law(n), "per_playlist": distinct / n,
            "time": shares(by_time[:cut[0]], by_time[cut[1]:]),
            "random": shares(shuffled[:cut[0]], shuffled[cut[1]:]), "caps": caps(by_time[:cut[0]]),
            "seconds": time.time() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,3000,20000,100000")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="synth.* overrides")
    args = ap.parse_args(argv)
    sc = load_config(overrides=args.overrides).synth
    print("| playlists | distinct tracks | real MPD (476 N^0.613) | ratio | held-out on tracks in < 5 train "
          "playlists: time split / random | in none: time / random | train tracks in >= 1 / 2 / 3 / 5 train "
          "playlists (share of train edges) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(n, sc)
        cap = " / ".join(f"{t:,} ({e:.0%})" for t, e in r["caps"].values())
        print(f"| {n:,} | {r['distinct']:,} | {r['law']:,.0f} | {r['distinct'] / r['law']:.2f} | "
              f"{r['time'][0]:.0%} / {r['random'][0]:.0%} | {r['time'][1]:.0%} / {r['random'][1]:.0%} | {cap} |",
              flush=True)
    print("real MPD, a few thousand playlists split at random: 41% on tracks in < 5 train playlists, 21% in none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
