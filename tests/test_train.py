"""The trainer: real torchrun processes (gloo, 2 CPU ranks) on a small generated graph."""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from conftest import ROOT, run_cmd, torchrun_train

from musicmap import metrics, storage
from musicmap.cases import load_eval
from musicmap.config import load_config
from musicmap.graph import load_graph, load_tracks, uri_index
from musicmap.recommend.recommenders import Popularity
from musicmap.train.batches import epoch_batches, per_rank_batch, sample_negatives
from musicmap.train.export import load_model
from musicmap.train.foldin import foldin_vectors
from musicmap.train.model import LightGCN


def torchrun(root, model_dir, *overrides, **kw):
    return torchrun_train(root, *overrides, model_dir=model_dir, **kw)


@pytest.fixture(scope="module")
def trained(trained_small):
    """(root, model dir, model): 4 epochs, 2 ranks."""
    return trained_small, trained_small / "model", load_model(str(trained_small / "model"))


def test_ranks_end_with_identical_parameters(trained):
    _, model_dir, m = trained
    digests = m.manifest["rank_param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert m.manifest["world_size"] == 2
    # they are the digests of the best epoch's weights (what was exported)
    ckpt = sorted((model_dir / "checkpoints").glob("epoch-*.pt"))[-1]
    best = torch.load(ckpt, weights_only=True)["best_weights"]
    assert digests[0] == hashlib.sha256(best.numpy().tobytes()).hexdigest()[:16]


def test_the_digests_are_of_the_weights_that_ship():
    """keep_best loads the best epoch's table before the digests are taken (they were taken of
    the last epoch's)."""
    from musicmap.train.checkpoint import TrainState
    from musicmap.train.main import digest, keep_best
    model = LightGCN(3, 4, dim=2, layers=1)
    best = torch.arange(14, dtype=torch.float32).reshape(7, 2)
    state = TrainState(best={"epoch": 1, "ndcg": 0.5}, best_weights=best)
    assert digest(model) != hashlib.sha256(best.numpy().tobytes()).hexdigest()[:16]
    keep_best(model, state)
    assert digest(model) == hashlib.sha256(best.numpy().tobytes()).hexdigest()[:16]


def test_loss_falls_and_history_is_written(trained):
    _, model_dir, m = trained
    version = storage.open_committed(str(model_dir)).version
    history = json.loads((model_dir / version / "history.json").read_text())
    losses = [h["loss"] for h in history]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.05
    assert all("val" in h for h in history)
    assert (model_dir / version / "training.png").read_bytes()[:4] == b"\x89PNG"
    man = m.manifest
    defaults = load_config().model
    assert (man["dim"], man["layers"], man["epochs_run"]) == (defaults.dim, defaults.layers, 4)
    # the kept epoch is the one whose validation NDCG is the highest in the history
    ndcgs = [h["val"]["ndcg"] for h in history]
    assert man["best"]["epoch"] == history[int(np.argmax(ndcgs))]["epoch"]
    assert man["best"]["ndcg"] == max(ndcgs) and man["best"]["cases"] == history[0]["val"]["cases"] > 0
    assert man["config"]["train"]["batch_size"] == 8192


def test_outputs_read_with_numpy_alone(trained):
    _, model_dir, m = trained
    version = storage.open_committed(str(model_dir)).version
    for name, rows in (("playlist_embeddings.npy", m.manifest["playlists"]),
                       ("track_embeddings.npy", m.manifest["tracks"]), ("track_foldin.npy", m.manifest["tracks"])):
        a = np.load(model_dir / version / name, allow_pickle=False)
        assert a.shape == (rows, 64) and a.dtype == np.float32 and np.isfinite(a).all()


def test_exported_embeddings_are_the_propagated_ones_of_the_best_epoch(trained):
    root, model_dir, m = trained
    graph, _ = load_graph(str(root / "graph"))
    graph = graph.embedded(m.manifest["tracks"])         # the tracks LightGCN embeds
    ckpts = sorted((model_dir / "checkpoints").glob("epoch-*.pt"))
    state = torch.load(io.BytesIO(ckpts[-1].read_bytes()), weights_only=True)  # no pickle
    model = LightGCN(graph.num_playlists, graph.num_tracks, m.manifest["dim"], m.manifest["layers"])
    model.embedding.weight.data.copy_(state["best_weights"])
    adj = graph.adjacency(False)
    with torch.no_grad():
        xs = model.layer_outputs(adj)
        final = torch.stack(xs).mean(0).numpy()
        deg = torch.from_numpy(graph.degrees(False)[graph.num_playlists:]).float()
        fold = foldin_vectors(xs, deg, graph.num_playlists).numpy()
    np.testing.assert_allclose(m.playlists, final[:graph.num_playlists], atol=1e-6)
    np.testing.assert_allclose(m.tracks, final[graph.num_playlists:], atol=1e-6)
    np.testing.assert_allclose(m.foldin, fold, atol=1e-6)
    # and they differ from the raw layer-0 table (the seed system's mistake)
    assert not np.allclose(m.tracks, state["best_weights"][graph.num_playlists:].numpy(), atol=1e-3)


def test_beats_popularity_on_validation_ndcg(trained):
    root, _, m = trained
    graph, committed = load_graph(str(root / "graph"))
    val = load_eval(committed, "val", uri_index(load_tracks(committed, ["track_idx", "track_uri"])))
    T = m.manifest["tracks"]                                   # the cases the trainer validates on:
    keep = [i for i in range(len(val)) if (val.seeds[i] < T).any()]   # some seed LightGCN embeds
    val = val.subset(keep)
    ranked, _ = Popularity().fit(graph).rank(val.seeds, val.name, 500)
    pop = np.mean([metrics.ndcg(r, h) for r, h in zip(ranked, val.holdouts)])
    assert m.manifest["best"]["cases"] == len(val)
    assert m.manifest["best"]["ndcg"] > pop + 0.05, (m.manifest["best"], pop)


def test_resumed_run_equals_an_uninterrupted_one(trained, tmp_path):
    root, _, full = trained
    model_dir = tmp_path / "model"
    torchrun(root, model_dir, "train.epochs=1")          # stopped after epoch 1 ...
    first = load_model(str(model_dir))
    assert first.manifest["epochs_run"] == 1
    p = torchrun(root, model_dir)                         # ... and resumed to epoch 4
    assert "resumed from checkpoint epoch 1" in p.stderr
    resumed = load_model(str(model_dir))
    assert resumed.manifest["epochs_run"] == 4
    np.testing.assert_array_equal(resumed.tracks, full.tracks)
    np.testing.assert_array_equal(resumed.playlists, full.playlists)


def test_one_process_runs_and_stops_at_its_budget(graph_small, tmp_path):
    """train.max_steps (as train.max_minutes) stops a run though epochs are left, part-way
    through an epoch: it validates and exports what it has and says where it stopped."""
    root, _ = graph_small
    p = run_cmd(["python", str(ROOT / "train" / "main.py"), "--root", str(root), "--set",
                 f"paths.model={tmp_path / 'model'}", "--set", "train.epochs=5", "--set", "train.progress=false",
                 "--set", "train.max_steps=130"])
    m = load_model(str(tmp_path / "model"))
    steps = m.manifest["steps_per_epoch"]
    assert m.manifest["world_size"] == 1 and m.manifest["epochs_run"] == 2 and steps < 130
    assert m.manifest["budget"] == {"max_minutes": 0.0, "max_steps": 130, "epoch": 2, "steps": 130 - steps,
                                    "of": steps}
    history = json.loads(storage.read_bytes(storage.open_committed(str(tmp_path / "model")).path("history.json")))
    assert [h["steps"] for h in history] == [steps, 130 - steps] and history[-1]["partial"]
    assert "val" in history[-1] and "stopped at the budget" in p.stderr


def test_negatives_are_tracks_for_the_same_playlist(graph_small):
    root, _ = graph_small
    graph, _ = load_graph(str(root / "graph"))
    gen = np.random.default_rng(0)
    playlists = np.repeat(np.arange(50), 20)
    neg = sample_negatives(graph, playlists, 3, True, gen)
    assert neg.shape == (1000, 3)
    assert neg.min() >= 0 and neg.max() < graph.num_tracks     # track ids, never playlists
    own = sum(np.isin(neg[playlists == p], graph.playlist_tracks(p)).sum() for p in range(50))
    assert own == 0                                             # rejected positives are redrawn


def test_the_schedule_gives_many_steps_on_a_small_graph():
    # a 48K-edge graph on 2 ranks: 100 steps of 239 positives, not one step of 65,536
    b = per_rank_batch(47_778, 2, 65_536, 100)
    assert b == 239 and -(-47_778 // (2 * b)) == 100
    assert per_rank_batch(50_000_000, 4, 65_536, 100) == 65_536     # the MPD keeps the full batch
    assert per_rank_batch(47_778, 2, 65_536, 0) == 65_536


def test_each_rank_gets_a_disjoint_share_reshuffled_every_epoch():
    shares = [np.concatenate(list(epoch_batches(1003, 2, r, 100, random_seed=0, epoch=1))) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 501
    assert not set(shares[0]) & set(shares[1])
    assert len(set(shares[0]) | set(shares[1])) == 1002
    again = np.concatenate(list(epoch_batches(1003, 2, 0, 100, random_seed=0, epoch=2)))
    assert not np.array_equal(shares[0], again)


def test_early_stopping_waits_patience_validations_and_keeps_the_best_epoch(graph_small, tmp_path):
    """lr 0: the weights never change, so no validation after the first improves on it; with
    patience 2 training stops after epoch 3 and keeps epoch 1."""
    root, _ = graph_small
    torchrun_train(root, "train.lr=0.0", "train.patience=2", "train.epochs=6", "train.val_max_cases=200",
                   model_dir=tmp_path / "model", nproc=1)
    m = load_model(str(tmp_path / "model"))
    assert m.manifest["epochs_run"] == 3 and m.manifest["best"]["epoch"] == 1
    history = json.loads(storage.read_bytes(storage.open_committed(str(tmp_path / "model")).path("history.json")))
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert len({h["val"]["ndcg"] for h in history}) == 1


def test_resume_is_refused_when_the_settings_or_the_graph_change(graph_small, tmp_path):
    root, _ = graph_small
    model_dir = tmp_path / "model"
    torchrun(root, model_dir, "train.epochs=1", nproc=1)
    # a setting that shapes the weights: start over
    p = torchrun(root, model_dir, "train.epochs=2", "train.lr=0.03", nproc=1)
    assert "belongs to another run" in p.stderr and "resumed from" not in p.stderr
    assert load_model(str(model_dir)).manifest["epochs_run"] == 2
    # the same settings on a newly committed graph: start over too
    g = storage.open_committed(str(root / "graph"))
    other = tmp_path / "root"
    w = storage.StageWriter(str(other / "graph"))
    import shutil
    shutil.copytree(g.path(), w.path(), dirs_exist_ok=True, ignore=shutil.ignore_patterns(storage.WRITER))
    w.commit({k: v for k, v in g.info.items() if k not in ("version", "committed_at")})
    p = torchrun(other, model_dir, "train.epochs=3", "train.lr=0.03", nproc=1)
    assert "belongs to another run" in p.stderr and "resumed from" not in p.stderr
    # and an unchanged run resumes
    p = torchrun(other, model_dir, "train.epochs=4", "train.lr=0.03", nproc=1)
    assert "resumed from checkpoint epoch 3" in p.stderr
