"""The second stage: a learned re-ranker over candidates from LightGCN, item co-occurrence,
popularity, recent popularity and the title model (the two-stage design that won the RecSys
Challenge 2018). LightGBM's LambdaRank orders each playlist's candidates by the features of
recommend.features; it is fitted on validation playlists only, and served only when a
cross-validation over those playlists says it beats LightGCN alone.

    ranked, scores = Ranker(sources_for(ctx, tuned), booster).rank(seeds, names, k=500)
    booster = load_booster(uri, manifest)          # the committed ranker's (recommend.context)

Fitting it is `musicmap fit-ranker` (recommend/fit_ranker.py).

Why LightGBM LambdaRank: it optimises a listwise NDCG objective directly, reads missing values
(a case without seeds) natively, saves as plain text (no pickle), and predicts millions of rows a
second on CPUs; XGBoost's rank:ndcg would do the same job with a heavier install.
"""
from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import torch

from musicmap import storage
from musicmap.errors import InputError
from musicmap.log import progress
from musicmap.recommend.features import FEATURE_NAMES, Block, Sources
from musicmap.topk import topk_rows


def lgb_params(ranker_cfg) -> dict:
    """LightGBM parameters from the ranker config section."""
    # Pairs are formed with the top 100 of each list only: half the time of all 500, the same
    # NDCG@500 on both real sets (bench/BENCHMARKS.md).
    return {"objective": "lambdarank", "metric": "ndcg", "eval_at": [500], "verbose": -1,
            "lambdarank_truncation_level": 100, "num_leaves": ranker_cfg.num_leaves,
            "learning_rate": ranker_cfg.learning_rate, "min_data_in_leaf": ranker_cfg.min_data_in_leaf,
            "feature_fraction": ranker_cfg.feature_fraction, "bagging_fraction": 0.8, "bagging_freq": 1,
            "seed": ranker_cfg.random_seed, "deterministic": True, "force_row_wise": True,
            "num_threads": ranker_cfg.threads}


class Ranker:
    """Re-ranks each playlist's candidates (recommend.features.Sources) with a fitted booster.

        ranked, scores = Ranker(sources, booster).rank(seeds, names, k=500)

    Same interface as the other recommenders. It serves new playlists only (it is fitted on
    them); graph playlists get LightGCN alone (recommend.main.recommend_train)."""
    name = "ranker"

    def __init__(self, sources: Sources, booster, chunk: int = 64, cold: str = "ranker"):
        self.sources, self.booster, self.chunk, self.cold = sources, booster, chunk, cold

    def fit(self, graph) -> "Ranker":
        """Nothing to fit here: `musicmap fit-ranker` (run below) fits the booster."""
        return self

    def rank(self, seeds: list[np.ndarray], names: list, k: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """Playlists without a seed go to the title model when cross-validation said it does
        better on them (cold="title")."""
        out = np.full((len(seeds), k), -1, np.int64)
        out_s = np.full((len(seeds), k), -np.inf, np.float32)
        for lo in progress(range(0, len(seeds), self.chunk), desc="ranker", unit="chunk",
                           disable=len(seeds) < 20 * self.chunk):
            hi = min(lo + self.chunk, len(seeds))
            block = self.sources.candidates(seeds[lo:hi], names[lo:hi])
            out[lo:hi], out_s[lo:hi] = order_block(block, self.booster.predict, k)
        cold = [i for i, s in enumerate(seeds) if len(s) == 0] if self.cold == "title" else []
        if cold:
            out[cold], out_s[cold] = self.sources.titles.rank([seeds[i] for i in cold], [names[i] for i in cold], k)
        return out, out_s


def order_block(block: Block, predict, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of each case's candidates by predicted score; a list shorter than k is filled from
    the block's fallback order (scored below every candidate)."""
    valid = block.cand >= 0
    s = np.full(block.cand.shape, -np.inf)
    if valid.any():
        s[valid] = predict(block.x[valid])
    order, sc = topk_rows(torch.from_numpy(s), k)   # ties in candidate order
    ids = np.where(order >= 0, np.take_along_axis(block.cand, order.clip(min=0), 1), -1)
    out = np.full((len(ids), k), -1, np.int64)
    out_s = np.full((len(ids), k), -np.inf, np.float32)
    floor = np.nanmin(np.where(np.isfinite(s), s, np.nan)) if np.isfinite(s).any() else 0.0
    for i in range(len(ids)):
        r, rs = ids[i][ids[i] >= 0], sc[i][ids[i] >= 0]
        if len(r) < k:
            fill = block.fallback[i][~np.isin(block.fallback[i], r) & (block.fallback[i] >= 0)][:k - len(r)]
            r = np.concatenate([r, fill])
            rs = np.concatenate([rs, floor - 1.0 - np.arange(len(fill), dtype=np.float32)])
        out[i, :len(r)], out_s[i, :len(r)] = r, rs
    return out, out_s


# ------------------------------------------------------------------ serving

def sources_for(ctx, tuned: dict) -> Sources:
    """The candidate sources of a loaded recommend Context (recommend.context.load_context), with
    RP3beta as tuned on validation (`tuned`: recommend.baselines.tune's result)."""

    def ids(col):       # a dense id per distinct value, numbered in order of first appearance
        return pc.dictionary_encode(ctx.tracks[col].combine_chunks()).indices.to_numpy().astype(np.int64)
    ranker_cfg = ctx.cfg.ranker
    ctx.use_tuned(tuned)       # one fit of each, shared with the other methods of this command
    fitted = ctx.baselines(["rp3beta", "cooccurrence"])
    return Sources(ctx.graph, ids("artist_uri"), ids("album_uri"), ctx.train_modified_at(), ctx.lightgcn(),
                   ctx.title_model, fitted.get("rp3beta"), fitted["cooccurrence"], k=ctx.cfg.recommend.k,
                   per_source=ranker_cfg.per_source)


def load_booster(uri: str, manifest: dict):
    """The LightGBM booster of the committed ranker whose manifest (with its version) is given;
    one fitted on another feature list is refused."""
    # Imported here: lightgbm costs 1.7 s (python -X importtime), and this module is loaded by
    # every command that reads a Context, most of which (similar, map, LightGCN-only recommend)
    # never load a booster.
    import lightgbm as lgb
    if manifest["features"] != FEATURE_NAMES:
        raise InputError(f"{uri}: fitted on other features ({len(manifest['features'])}); rerun "
                         f"`musicmap fit-ranker`")
    return lgb.Booster(model_str=storage.read_text(storage.join(manifest["uri"], "model.txt")))
