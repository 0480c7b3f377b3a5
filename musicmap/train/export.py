"""The trainer's output under model/ (committed atomically), readable with numpy alone:

    model/_SUCCESS                        names the committed version
    model/<version>/playlist_embeddings.npy   (P, d) float32 final (propagated) embeddings
    model/<version>/track_embeddings.npy      (T, d) float32 final (propagated) embeddings
    model/<version>/track_foldin.npy          (T, d) float32 f_t for playlists outside the graph
    model/<version>/manifest.json             dims, layers, epochs, best validation, config, input
    model/<version>/history.json              loss and validation metrics by epoch
    model/<version>/training.png              loss and validation NDCG by epoch

    m = load_model("demo-data/model"); m.tracks.shape
"""
from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass

import numpy as np

from musicmap import cache, storage

# The model's arrays are memory-mapped read-only (load_model): torch reads them without a copy
# and never writes to them, so its warning about non-writable arrays says nothing here.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def write_model(out: storage.StageWriter, playlists: np.ndarray, tracks: np.ndarray,
                foldin: np.ndarray, manifest: dict, history: list[dict]) -> dict:
    storage.write_bytes(out.path("playlist_embeddings.npy"), _npy_bytes(playlists.astype(np.float32)))
    storage.write_bytes(out.path("track_embeddings.npy"), _npy_bytes(tracks.astype(np.float32)))
    storage.write_bytes(out.path("track_foldin.npy"), _npy_bytes(foldin.astype(np.float32)))
    storage.write_json(out.path("history.json"), history)
    storage.write_json(out.path("manifest.json"), manifest)
    png = plot_history(history)
    if png:
        storage.write_bytes(out.path("training.png"), png)
    return out.commit({"stage": "model", "graph_version": manifest["input"]["graph_version"],
                       "best_epoch": manifest["best"]["epoch"]})


def plot_history(history: list[dict]) -> bytes | None:
    if not history:
        return None
    # Imported here: matplotlib.pyplot costs 0.55 s (python -X importtime), and recommend, similar
    # and map load this module for load_model only.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ep, [h["loss"] for h in history], "o-", color="tab:blue", label="BPR loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("BPR loss", color="tab:blue")
    val = [(h["epoch"], h["val"]["ndcg"]) for h in history if h.get("val")]
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), "s-", color="tab:orange", label="validation NDCG")
        ax2.set_ylabel("validation NDCG", color="tab:orange")
    ax.set_title("LightGCN training")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


@dataclass
class TrainedModel:
    playlists: np.ndarray   # (P, d)
    tracks: np.ndarray      # (T, d)
    foldin: np.ndarray      # (T, d)
    manifest: dict
    version: str


ARRAYS = {"playlists": "playlist_embeddings.npy", "tracks": "track_embeddings.npy", "foldin": "track_foldin.npy"}


def load_model(model_uri: str, storage_cfg=None) -> TrainedModel:
    """The committed model. Its arrays are memory-mapped read-only where they can be (a local
    root; with storage_cfg, a copy in musicmap.cache for a remote one), so the ranks of a job
    share one copy; otherwise read into memory."""
    m = storage.open_committed(model_uri, "train")

    def npy(name):
        return np.load(io.BytesIO(storage.read_bytes(m.path(name))), allow_pickle=False)
    if storage.is_local(model_uri):
        local = storage.get_fs(m.path())[1]
        arrays = {k: np.load(f"{local}/{f}", mmap_mode="r", allow_pickle=False) for k, f in ARRAYS.items()}
    elif storage_cfg is not None:
        arrays = cache.cached(storage_cfg, f"{m.version}/model", lambda: {k: npy(f) for k, f in ARRAYS.items()})
    else:
        arrays = {k: npy(f) for k, f in ARRAYS.items()}
    manifest = json.loads(storage.read_bytes(m.path("manifest.json")))
    return TrainedModel(arrays["playlists"], arrays["tracks"], arrays["foldin"], manifest, m.version)
