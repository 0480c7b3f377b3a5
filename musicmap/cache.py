"""Arrays built once per machine and memory-mapped by every process that needs them: the ranks of
one job (recommend --nproc N, train under torchrun) and the commands run after it on the same
machine (fit-ranker, recommend and evaluate all need the same item-item neighbours).

    arrays = cached(cfg.storage, f"{graph.version}/rp3beta-{digest(params)}", build)
    W = csr_from(arrays)            # the fitted matrix, its pages shared by every process

`build()` returns {name: numpy array}; the first process to ask builds and saves them as .npy
files (under an exclusive lock on the key, so concurrent ranks wait instead of building twice),
every process then maps them read-only: the operating system keeps one copy in memory, however
many processes read it. A key names what the arrays are made from (the graph version and the
settings), so a stale entry is never read. Entries of versions other than the few last used are
removed when a new one is built (a run on another graph beside a long job leaves the job's alone).

The folder is `storage.cache_dir`, or ~/.cache/musicmap ($XDG_CACHE_HOME/musicmap); it holds
nothing that cannot be rebuilt (delete it at will). At the MPD's size it holds ~10 GB.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

from musicmap.log import get_logger

DONE = "_DONE"
KEEP_GROUPS = 3     # a graph's, a model's and one spare
log = get_logger("cache")


def cache_root(storage_cfg) -> str:
    """storage.cache_dir, or $XDG_CACHE_HOME/musicmap (~/.cache/musicmap)."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return getattr(storage_cfg, "cache_dir", None) or os.path.join(home, "musicmap")


def digest(params) -> str:
    """A short stable name for a settings dict."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached(storage_cfg, key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """{name: read-only memory-mapped array} of `key` (e.g. "<graph version>/rp3beta-<digest>"),
    built by `build` when no process built them before."""
    root = cache_root(storage_cfg)
    folder = os.path.join(root, *key.split("/"))
    if not os.path.exists(os.path.join(folder, DONE)):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)           # one builder; the others wait, then map
            if not os.path.exists(os.path.join(folder, DONE)):
                t0 = time.time()
                arrays = build()
                for name, a in arrays.items():
                    tmp = os.path.join(folder, f".{name}.npy")
                    np.save(tmp, np.ascontiguousarray(a), allow_pickle=False)
                    os.replace(tmp, os.path.join(folder, f"{name}.npy"))
                with open(os.path.join(folder, DONE), "w") as f:
                    json.dump(sorted(arrays), f)
                log.info("built %s in %.0fs (%.2f GB, shared by later processes)", key, time.time() - t0,
                         sum(a.nbytes for a in arrays.values()) / 1e9)
                _evict(root, key.split("/")[0])
    os.utime(os.path.join(root, key.split("/")[0]))   # in use: eviction goes by last use
    with open(os.path.join(folder, DONE)) as f:
        names = json.load(f)
    return {n: np.load(os.path.join(folder, f"{n}.npy"), mmap_mode="r", allow_pickle=False) for n in names}


def _evict(root: str, current: str) -> None:
    """Remove the entries of versions (a key's first part: a graph's or a model's) other than the
    KEEP_GROUPS last used (every read marks its version's folder); `current` always stays."""
    folders = sorted((e for e in os.scandir(root) if e.is_dir() and e.name != current),
                     key=lambda e: e.stat().st_mtime, reverse=True)
    for e in folders[KEEP_GROUPS - 1:]:
        shutil.rmtree(e.path, ignore_errors=True)


def csr_arrays(m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """What cached() stores of a CSR matrix."""
    idx = np.int32 if max(m.nnz, *m.shape) < 2 ** 31 else np.int64    # scipy wants one index type
    return {"indptr": m.indptr.astype(idx), "indices": m.indices.astype(idx),
            "data": m.data.astype(np.float32), "shape": np.array(m.shape, np.int64)}


def csr_from(arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    """The CSR matrix of csr_arrays() over the mapped arrays (no copy)."""
    m = sp.csr_matrix(tuple(arrays["shape"].tolist()), dtype=np.float32)
    m.data, m.indices, m.indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    return m
