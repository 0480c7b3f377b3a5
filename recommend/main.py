"""torchrun entry of the batch recommend job, playlists sharded over the ranks:

    torchrun --nproc_per_node=N recommend/main.py --root URI [--playlists all] [--challenge FILE]

The job is musicmap/recommend/main.py (what `musicmap recommend --nproc N` runs); this file only
runs it.
"""
from musicmap.distributed import run_worker
from musicmap.recommend.main import main

if __name__ == "__main__":
    run_worker(main, "recommend")
