"""Training checkpoints in storage: <model>/checkpoints/epoch-NNNN.pt, one per epoch, each
written atomically (one PUT / a rename), loaded with torch.load(weights_only=True).

A run resumes from the newest checkpoint whose fingerprint (graph version + every config key that
changes the result) matches its own; anything else is ignored.
"""
from __future__ import annotations

import hashlib
import io
import json
import re

import torch

from musicmap import storage
from musicmap.log import get_logger

log = get_logger("checkpoint")
NAME = re.compile(r"epoch-(\d{4,})\.pt$")
# train.* keys that do not change the trained weights
NEUTRAL_TRAIN_KEYS = {"progress", "resume", "keep_checkpoints", "device", "epochs", "patience",
                      "val_every", "dist_timeout_s"}


# Bumped when the trained weights mean something else for the same config: checkpoints of
# version 1 were trained with a propagation that was all zeros (train/data.py: degrees).
FORMAT = 2


def fingerprint(cfg, graph_version: str, world_size: int) -> str:
    """Identity of a training run: resuming is only allowed into the same one. epochs, patience
    and val_every are left out so a finished run can be extended."""
    train = {k: v for k, v in cfg.train.to_dict().items() if k not in NEUTRAL_TRAIN_KEYS}
    blob = json.dumps({"graph": graph_version, "model": cfg.model.to_dict(), "train": train,
                       "world": world_size, "format": FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
        except Exception as e:  # noqa: BLE001 - a damaged file: try the previous one
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
