"""Training checkpoints in storage: <model>/checkpoints/epoch-NNNN.pt, one per epoch, each
written atomically (one PUT / a rename), loaded with torch.load(weights_only=True).

A run resumes from the newest readable checkpoint whose fingerprint (graph version + every config
key that changes the result) matches its own; anything else is ignored. Rank 0 chooses it and
every other rank loads exactly that one (or fails, naming it).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field, fields

import torch

from musicmap import distributed, storage
from musicmap.errors import MusicMapError
from musicmap.log import get_logger

log = get_logger("checkpoint")
NAME = re.compile(r"epoch-(\d{4,})\.pt$")
# train.* keys that do not change the trained weights
NEUTRAL_TRAIN_KEYS = {"progress", "resume", "keep_checkpoints", "device", "epochs", "patience",
                      "val_every", "dist_timeout_s", "dist_backend", "max_minutes", "max_steps"}


# Bumped when the trained weights mean something else for the same config: checkpoints of
# version 1 were trained with a propagation that was all zeros (musicmap/graph.py: degrees).
FORMAT = 2


def fingerprint(cfg, graph_version: str, world_size: int) -> str:
    """Identity of a training run: resuming is only allowed into the same one. epochs, patience
    and val_every are left out so a finished run can be extended."""
    train = {k: v for k, v in cfg.train.to_dict().items() if k not in NEUTRAL_TRAIN_KEYS}
    blob = json.dumps({"graph": graph_version, "model": cfg.model.to_dict(), "train": train,
                       "world": world_size, "format": FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class TrainState:
    """What a run carries from one epoch to the next. It is saved in every checkpoint beside the
    weights, the optimizer and the RNG, and restored as one (`save_run`, `resume`)."""
    epoch: int = 0                                   # the last finished epoch
    history: list = field(default_factory=list)      # one entry per epoch: loss, seconds, val
    best: dict = field(default_factory=lambda: {"epoch": 0, "ndcg": -1.0})
    bad_validations: int = 0                         # validations since the best one
    stopped: bool = False                            # early stopping fired
    budget: dict | None = None                       # where train.max_minutes/max_steps stopped it
    best_weights: torch.Tensor | None = None         # the layer-0 table of the best epoch

    def end_epoch(self, entry: dict, model, patience: int) -> None:
        """Record a finished epoch. A validation that beats the best keeps the weights; one that
        does not counts toward patience."""
        v = entry.get("val")
        if v is not None and v["ndcg"] > self.best["ndcg"]:
            self.best, self.bad_validations = {"epoch": entry["epoch"], **v}, 0
            self.best_weights = model.table()
        elif v is not None:
            self.bad_validations += 1
            self.stopped = bool(patience) and self.bad_validations >= patience
        self.epoch = entry["epoch"]
        self.history.append(entry)


def save_run(ckpt_dir: str, fp: str, state: TrainState, model, opt, keep: int) -> str:
    """Checkpoint the run after epoch state.epoch."""
    blob = {f.name: getattr(state, f.name) for f in fields(state)}
    blob.update(fingerprint=fp, model=model.state_dict(), optimizer=opt.state_dict(),
                rng=torch.get_rng_state())
    return save(ckpt_dir, state.epoch, blob, keep)


def resume_together(ckpt_dir: str, fp: str, model, opt, rank: int = 0) -> TrainState | None:
    """Load the checkpoint rank 0 chose (its newest readable one of this run) into model, opt and
    torch's RNG on every rank, and return its state; None when there is none. A rank that cannot
    read that very checkpoint fails, naming it: resuming from another epoch would train apart
    from the others."""
    blob = load_latest(ckpt_dir, fp) if rank == 0 else None
    epoch = distributed.broadcast(None if blob is None else int(blob["epoch"]))
    if epoch is None:
        return None
    if blob is None:
        blob = load_epoch(ckpt_dir, epoch, fp)
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["rng"])
    return TrainState(**{f.name: blob[f.name] for f in fields(TrainState) if f.name in blob})


def load_epoch(ckpt_dir: str, epoch: int, fp: str) -> dict:
    """Exactly the checkpoint of `epoch`, of this run (fingerprint fp), or a MusicMapError."""
    uri = storage.join(ckpt_dir, f"epoch-{epoch:04d}.pt")
    try:
        blob = torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read it means the same to the run
        raise MusicMapError(f"{uri}: rank 0 resumes from this checkpoint, but this rank cannot read "
                            f"it ({type(e).__name__}: {str(e)[:200]}); check that every node sees the "
                            f"same model folder, or rerun with --set train.resume=false") from None
    if blob.get("fingerprint") != fp:
        raise MusicMapError(f"{uri}: rank 0 resumes from this checkpoint, but this rank reads one of "
                            f"another run (graph or config); check that every node sees the same "
                            f"model folder")
    return blob


def save(ckpt_dir: str, epoch: int, state: dict, keep: int) -> str:
    buf = io.BytesIO()
    torch.save(state, buf)
    uri = storage.join(ckpt_dir, f"epoch-{epoch:04d}.pt")
    storage.write_bytes(uri, buf.getvalue())
    names = sorted(n for n in storage.listdir(ckpt_dir) if NAME.search(n))
    for old in names[:-keep] if keep > 0 else []:
        storage.remove(storage.join(ckpt_dir, old))
    return uri


def load_latest(ckpt_dir: str, fp: str, map_location="cpu") -> dict | None:
    """The newest readable checkpoint with fingerprint fp, or None."""
    names = sorted((n for n in storage.listdir(ckpt_dir) if NAME.search(n)), reverse=True)
    for n in names:
        uri = storage.join(ckpt_dir, n)
        try:
            state = torch.load(io.BytesIO(storage.read_bytes(uri)), map_location=map_location,
                               weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged file, so try the previous one
            log.warning("skipping unreadable checkpoint %s (%s)", uri, type(e).__name__)
            continue
        if state.get("fingerprint") == fp:
            return state
        log.info("checkpoint %s belongs to another run (graph or config changed); not resuming", uri)
        return None
    return None


def clear(ckpt_dir: str) -> None:
    for n in storage.listdir(ckpt_dir):
        if NAME.search(n):
            storage.remove(storage.join(ckpt_dir, n))
