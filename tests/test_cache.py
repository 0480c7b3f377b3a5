"""What the processes of a job share (musicmap/cache.py): arrays built once per machine and
memory-mapped, by real processes racing for the same key."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from types import SimpleNamespace

import numpy as np
import pytest

from musicmap import cache
from musicmap.graph import Graph
from musicmap.recommend.recommenders import CoOccurrence, RP3Beta


def _build_and_load(folder: str, log: str, out: mp.Queue) -> None:
    """One process asking for the key: builds it (slowly, noting that it did) or maps it."""
    def build():
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)                      # long enough for the other process to ask meanwhile
        return {"a": np.arange(10, dtype=np.int64) * 3}
    got = cache.cached(SimpleNamespace(cache_dir=folder), "v-graph/thing-1", build)["a"]
    out.put((type(got).__name__, got.flags.writeable, got.tolist()))


def test_processes_asking_at_once_build_once_and_all_map_the_result(tmp_path):
    log = str(tmp_path / "builds.log")
    q = mp.get_context("spawn").Queue()
    procs = [mp.get_context("spawn").Process(target=_build_and_load, args=(str(tmp_path / "c"), log, q))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = [q.get(timeout=5) for _ in procs]
    assert len(open(log).read().split()) == 1                      # built once ...
    assert all(g == ("memmap", False, list(range(0, 30, 3))) for g in got)   # ... mapped read-only by all


def test_a_fitted_neighbour_matrix_is_reused_and_equals_a_fresh_fit(tmp_path):
    rng = np.random.default_rng(0)
    pl, tr = rng.integers(0, 40, 400), rng.integers(0, 60, 400)
    keys = np.unique(pl * 60 + tr)
    g = Graph(40, 60, keys // 60, keys % 60, np.ones(len(keys), np.float32), "v-test")
    cfg = SimpleNamespace(cache_dir=str(tmp_path))
    for make in (lambda: CoOccurrence(neighbours=7), lambda: RP3Beta(alpha=0.7, beta=0.3, neighbours=7)):
        first, again, calls = make().fit(g, cfg), make(), []
        again.matrix = lambda graph, real=again.matrix: calls.append(1) or real(graph)
        second = again.fit(g, cfg)
        assert not calls                                              # mapped, not refitted
        fresh = make().fit(g)
        for m in (first, second):
            np.testing.assert_array_equal(m.W.toarray(), fresh.W.toarray())
    other = CoOccurrence(neighbours=3).fit(g, cfg)                   # other settings: another key
    assert (np.diff(other.W.indptr) <= 3).all()
    with pytest.raises(ValueError):
        second.W.data[0] = 1.0                                        # read-only: nobody writes a shared copy


def test_eviction_keeps_the_versions_last_used(tmp_path):
    """A new version's entry evicts the least recently used versions, not the oldest built: a long
    job still reading its graph's arrays keeps them while runs on other graphs build theirs."""
    where = SimpleNamespace(cache_dir=str(tmp_path))
    build = lambda: {"a": np.zeros(3)}                  # noqa: E731
    for v in ("v-1", "v-2", "v-3"):
        cache.cached(where, f"{v}/x", build)
        past = time.time() - 100 + int(v[-1])           # built in this order, a while ago
        os.utime(tmp_path / v, (past, past))
    cache.cached(where, "v-1/x", build)                 # the long job reads v-1 again
    cache.cached(where, "v-4/x", build)                 # another graph's arrays
    assert sorted(os.listdir(tmp_path)) == ["v-1", "v-3", "v-4"]
