"""The bounded evaluation sample (musicmap.cases.sample, read by load_eval): which playlists'
cases are recommended and scored when a split holds more than evaluate.max_playlists."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from musicmap import cases, schemas, storage
from musicmap.cases import load_eval


def test_the_sample_is_whole_playlists_the_same_in_any_order_and_nested():
    rng = np.random.default_rng(0)
    pids = np.repeat(rng.choice(10**9, 500, replace=False), 2)        # two cases per playlist
    keep = cases.sample(pids, 100, random_seed=2018)
    assert len(np.unique(pids[keep])) == 100 and keep.sum() == 200   # both cases of a drawn playlist
    shuffled = rng.permutation(len(pids))
    assert set(pids[shuffled][cases.sample(pids[shuffled], 100, 2018)]) == set(pids[keep])
    assert set(pids[keep]) < set(pids[cases.sample(pids, 200, 2018)])     # a larger bound draws more
    assert set(pids[keep]) != set(pids[cases.sample(pids, 100, 7)])      # another seed, others
    assert cases.sample(pids, 0, 2018).all() and cases.sample(pids, 10**6, 2018).all()


def test_load_eval_reads_only_the_drawn_playlists_and_says_how_many(tmp_path):
    n = 40
    rows = {"pid": np.repeat(np.arange(n), 2), "split": ["test"] * (2 * n), "category": ["first5", "seed_half"] * n,
            "name": ["x"] * (2 * n), "num_tracks": [10] * (2 * n), "seed_idx": [[0]] * (2 * n),
            "seed_uris": [["u0"]] * (2 * n), "holdout_uris": [["u1", "zz"]] * (2 * n),
            "holdout_artist_uris": [["a"]] * (2 * n)}
    out = storage.StageWriter(str(tmp_path / "graph"))
    storage.write_parquet(pa.table(rows, schema=schemas.EVAL), out.path("eval", "part-0.parquet"))
    out.commit()
    g = storage.open_committed(str(tmp_path / "graph"))
    uris = pa.array(["u0", "u1"])
    got = load_eval(g, "test", uris, max_playlists=10, random_seed=3)
    assert len(got) == 20 and got.drawn == (10, n)
    assert set(got.pid) == set(np.arange(n)[cases.sample(np.arange(n), 10, 3)])
    assert got.holdouts[0].tolist() == [1, -2]             # in the catalogue, and a miss
    everything = load_eval(g, "test", uris)
    assert len(everything) == 2 * n and everything.drawn is None
