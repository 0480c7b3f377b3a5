"""torchrun entry of the trainer, where the product's command line points:

    torchrun --nproc_per_node=N train/main.py --root URI [--config FILE] [--set k=v]

The training loop, top to bottom, is musicmap/train/main.py; this file only runs it (an installed
wheel has no train/ folder: `musicmap train` runs that module itself).
"""
from musicmap.distributed import run_worker
from musicmap.train.main import main

if __name__ == "__main__":
    run_worker(main, "train")
