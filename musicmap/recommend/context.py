"""What the recommend, evaluate, similar, map and fit-ranker commands read from storage, loaded
once: the committed graph and its tables, the trained model, the title model and, when it is
served, the re-ranker.

    ctx = load_context(cfg)                   # ranker=False: LightGCN alone
    ids, scores = ctx.recommender().rank(seeds, names, k=500)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from musicmap import schemas, storage
from musicmap.cases import EvalCases, load_eval
from musicmap.errors import InputError
from musicmap.graph import Graph, load_graph, load_tracks
from musicmap.log import get_logger
from musicmap.recommend import baselines
from musicmap.recommend.ranker import Ranker, load_booster, sources_for
from musicmap.recommend.recommenders import LightGCNRecommender, TitleModel
from musicmap.train.export import TrainedModel, load_model
from musicmap.train.foldin import FoldIn

log = get_logger("recommend")


ITEM_BASED = ("rp3beta", "cooccurrence", "ease")     # methods that rank from a playlist's tracks


@dataclass
class Context:
    """Everything the recommend, evaluate, similar, map and fit-ranker commands read from storage."""
    cfg: object
    graph: Graph
    committed: storage.Committed
    tracks: pa.Table          # graph/tracks sorted by track_idx
    playlists: pa.Table       # graph/playlists
    train_playlists: pa.Table  # its graph (train) playlists, by playlist_idx
    model: TrainedModel | None
    title_model: TitleModel
    booster: object = None    # the committed ranker's LightGBM booster, when it is served
    ranker_manifest: dict | None = None     # its manifest, when it is served
    ranker_report: dict | None = None       # the committed ranker's manifest (read once), if any
    fitted: dict | None = None      # the committed ranker's manifest when fitted on this model
    _fitted: dict = field(default_factory=dict, repr=False)   # "tuned" settings, fitted baselines
    _served: object = field(default=None, repr=False)

    @cached_property
    def uris(self) -> pa.Array:
        """The catalogue's track URIs by track_idx."""
        return self.tracks["track_uri"].combine_chunks()

    @property
    def method(self) -> str:
        """What recommend serves: ranker or lightgcn."""
        return "ranker" if self.booster is not None else "lightgcn"

    def device(self) -> str:
        d = self.cfg.recommend.device
        return ("cuda" if torch.cuda.is_available() else "cpu") if d == "auto" else d

    def foldin_spec(self) -> FoldIn:
        """recommend.foldin, or with auto the mode the trainer's validation chose."""
        recommend = self.cfg.recommend
        chosen = (self.model.manifest.get("foldin") or {}).get("chosen") if self.model else None
        return FoldIn.from_config(recommend, chosen)

    def cases(self, split: str) -> EvalCases:
        """The evaluation cases of a split (val, test, graph_val, graph_test) that are recommended
        and scored: a sample of at most evaluate.max_playlists playlists (musicmap.cases.sample)."""
        return load_eval(self.committed, split, self.uris, max_playlists=self.cfg.evaluate.max_playlists,
                         random_seed=self.cfg.graph.eval_random_seed)

    def train_modified_at(self) -> np.ndarray:
        """modified_at of the graph playlists, by playlist_idx."""
        return self.train_playlists["modified_at"].to_numpy()

    def lightgcn(self, foldin: str | None = None) -> LightGCNRecommender:
        """LightGCN alone, with the configured fold-in or `foldin` (a mode: what made some recs)."""
        spec = self.foldin_spec() if foldin is None else self.foldin_spec().with_mode(foldin)
        return LightGCNRecommender(self.model, self.title_model, spec, self.device(), self.cfg.recommend.chunk,
                                   fallback=self.fallback)

    def fallback(self):
        """What serves a new playlist LightGCN has no vector for (seeds, but none embedded): the
        method fit-ranker measured best on such validation cases (the title model or an
        item-based one), else the title model. Fitted once per command (Context.baseline)."""
        chosen = ((self.fitted or {}).get("no_vector_cases") or {}).get("chosen", "title")
        return self.title_model if chosen == "title" else self.baseline(chosen)

    def graph_fallback(self):
        """What serves a graph playlist with no embedded track (no trained vector): the item-based
        method best on the graph playlists' held-out tracks when fit-ranker measured them
        (graph_val), else co-occurrence, which needs no tuning."""
        val = ((self.fitted or {}).get("graph_playlists") or {}).get("val_ndcg") or {}
        item = {m: v for m, v in val.items() if m in ITEM_BASED}
        return self.baseline(max(item, key=item.get) if item else "cooccurrence")

    def graph_method(self) -> str:
        """What graph playlists are served (recommend.graph_method; auto: what fit-ranker chose on
        the graph_val cases, else LightGCN)."""
        method = self.cfg.recommend.graph_method
        if method != "auto":
            return method
        return ((self.fitted or {}).get("graph_playlists") or {}).get("chosen", "lightgcn")

    def baseline(self, name: str):
        """The baseline `name` (recommend.baselines.BASELINES) fitted once for this command, with the
        settings tuned for this graph; InputError for a tuned one skipped here (EASE^R above its size)."""
        if name not in self._fitted:
            if "tuned" not in self._fitted and name in baselines.TUNED:
                self._fitted["tuned"] = baselines.chosen_for(self)
            rec = baselines.fitted(self, name, self._fitted.get("tuned", {}))
            if rec is None:
                why = (self._fitted.get("tuned", {}).get(name) or {}).get("skipped", "not tuned")
                raise InputError(f"{name} cannot serve this graph: {why}")
            self._fitted[name] = rec
        return self._fitted[name]

    def baselines(self, names) -> dict:
        """{name: baseline(name)} of `names` (any of evaluate.baselines), but a tuned one skipped
        for this graph (EASE^R above its size, logged when it was tuned)."""
        out = {}
        for name in names:
            try:
                out[name] = self.baseline(name)
            except InputError:
                if name not in baselines.TUNED:
                    raise
        return out

    def use_tuned(self, tuned: dict) -> None:
        """Fit the tuned baselines with these settings from now on (recommend.baselines.tune's
        result); baselines fitted with other settings are dropped."""
        if self._fitted.get("tuned") != tuned:
            self._fitted = {"tuned": tuned}

    def recommender(self):
        """The served recommender (recommend.method): the ranker or LightGCN alone, built once
        (the ranker's RP3beta source is a fit over the whole catalogue)."""
        if self.booster is None:
            return self.lightgcn()
        if self._served is None:
            self._served = Ranker(sources_for(self, self.ranker_manifest["tuned"]), self.booster,
                                  self.cfg.ranker.chunk,
                                  self.ranker_manifest.get("no_seed_cases", {}).get("chosen", "ranker"))
        return self._served


def load_context(cfg, need_model: bool = True, ranker: bool = True, force: bool = False) -> Context:
    graph, committed = load_graph(storage.stage_uri(cfg, "graph"), cfg.storage)
    model = load_model(storage.stage_uri(cfg, "model"), cfg.storage) if need_model else None
    if model is not None and model.manifest["input"]["graph_version"] != committed.version:
        raise InputError(f"{storage.stage_uri(cfg, 'model')}: the model was trained on graph "
                         f"{model.manifest['input']['graph_version']} but the graph is now "
                         f"{committed.version}; rerun `musicmap train`")
    tracks = load_tracks(committed)
    playlists = storage.read_parquet(committed.path("playlists"), schema=schemas.PLAYLISTS)
    train_pl = playlists.filter(pc.equal(playlists["split"], "train")).sort_by("playlist_idx")
    titles = TitleModel(train_pl["name"].to_pylist()).fit(graph, cfg.storage)
    ctx = Context(cfg, graph, committed, tracks, playlists, train_pl, model, titles)
    ctx.ranker_report, why = ranker_report(cfg)        # the committed ranker's manifest, read once
    if model is not None and ctx.ranker_report:
        fitted_here = ctx.ranker_report["input"]["model_version"] == model.version
        ctx.fitted = ctx.ranker_report if fitted_here else None
    if ranker and model is not None:
        ctx.booster, ctx.ranker_manifest = served_ranker(cfg, ctx.ranker_report, why, model.version, force)
    return ctx


def ranker_report(cfg) -> tuple[dict | None, str]:
    """(the committed ranker's manifest with its version, ""), or (None, why there is none)."""
    try:
        r = storage.open_committed(storage.stage_uri(cfg, "ranker"), "fit-ranker")
    except storage.NotCommittedError as e:
        return None, str(e)
    return {**storage.read_json(r.path("manifest.json")), "version": r.version, "uri": r.path()}, ""


def served_ranker(cfg, report: dict | None, why: str, model_version: str, force: bool = False):
    """(booster, manifest) when recommend.method says the ranker serves, else (None, None). With
    auto, a ranker fitted on another model stops the command unless `force` (LightGCN alone)."""
    method = cfg.recommend.method          # one of config.Recommend's choices
    if method == "lightgcn":
        return None, None
    if report is None:
        if method == "ranker":
            raise InputError(f"recommend.method=ranker: {why}")
        log.info("no committed ranker (run `musicmap fit-ranker` for the two-stage default): "
                 "serving LightGCN alone")
        return None, None
    made = report["input"]["model_version"]
    stale = f"fitted on model {made}, the model is now {model_version}" if made != model_version else ""
    if method == "auto" and stale:
        if not force:
            raise InputError(f"{storage.stage_uri(cfg, 'ranker')}: the ranker was {stale}: rerun "
                             f"`musicmap fit-ranker` (or pass --force to serve LightGCN alone, or set "
                             f"recommend.method=ranker to serve this ranker anyway)")
        log.warning("the ranker is stale (%s): serving LightGCN alone (--force)", stale)
        return None, None
    if method == "auto" and report["chosen"] != "ranker":
        log.info("the ranker's cross-validation did not beat LightGCN alone: serving LightGCN")
        return None, None
    if stale:
        log.warning("recommend.method=ranker with a ranker %s", stale)
    return load_booster(storage.stage_uri(cfg, "ranker"), report), report
