"""The Python API, for a notebook or a service: the committed stages under one root, one object.

    mm = musicmap.load("demo-data")                      # or s3://bucket/mm; config=, overrides=
    recs = mm.recommend(seed_tracks=["spotify:track:...", "Jamming"], title="road trip", k=10)
    recs.ids, recs.uris, recs.scores, recs.method, recs.foldin
    mm.similar("spotify:track:...", k=10)                # LightGCN alone, as `musicmap similar`

It reads what the commands committed (graph/, model/, ranker/), serves new playlists exactly as
`musicmap recommend` serves the challenge's (the ranker when fit-ranker chose it, else LightGCN
with the model's fold-in; a title alone goes to the title model when cross-validation chose
it), and never writes. A seed is a track URI, a track name that one catalogue track has, or
"name - artist" as results print them (an unknown or shared name is an error naming the closest
matches); a URI outside the catalogue is left out, as the recommend job leaves out such seeds,
with a warning, and the result names it (`recs.left_out`). With no seed left and no title there
is nothing to recommend from: an error naming the seeds left out.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from musicmap import storage
from musicmap.config import load_config
from musicmap.errors import InputError
from musicmap.log import get_logger
from musicmap.recommend import similar as similar_tracks
from musicmap.recommend.context import Context, load_context

URI_PREFIX = "spotify:track:"
HINT = 'write "name - artist" or give the URI'
log = get_logger("api")


@dataclass
class Recommendations:
    """A ranked list: track_idx, URIs and scores, best first (higher is better within one
    method), and what produced it."""
    ids: np.ndarray       # (n,) int64 track_idx in graph/tracks
    uris: list[str]
    names: list[str]      # "track - artist"
    scores: np.ndarray    # (n,) float32
    method: str           # what served it: ranker, lightgcn, title, or the item-based method that
                          # serves seeds LightGCN has no vector for (rp3beta, cooccurrence, ease)
    foldin: str           # how the seeds became LightGCN's query (recommend.foldin)
    left_out: list[str] = field(default_factory=list)   # seeds outside the catalogue, not used

    def __len__(self) -> int:
        return len(self.ids)

    def __str__(self) -> str:
        head = f"{len(self)} tracks ({self.method}, fold-in {self.foldin}):"
        if self.left_out:
            head += f" [left out, not in the catalogue: {', '.join(self.left_out)}]"
        return "\n".join([head] + [f"{r:>3}. {n}  ({u}, {s:.4f})" for r, (n, u, s) in
                                   enumerate(zip(self.names, self.uris, self.scores), 1)])


class MusicMap:
    """The committed graph, model and ranker of one storage root (see musicmap.load)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.tracks: pa.Table = ctx.tracks        # graph/tracks, by track_idx
        self._by_uri = {u: i for i, u in enumerate(ctx.uris.to_pylist())}

    def recommend(self, seed_tracks=(), title: str | None = None, k: int = 10) -> Recommendations:
        """The top k tracks for a new playlist of these seed tracks (URIs or names) and title;
        never a seed. With neither, or with only seeds outside the catalogue and no title, an
        error."""
        if isinstance(seed_tracks, str):
            seed_tracks = [seed_tracks]
        if not seed_tracks and not title:
            raise InputError("recommend: give seed_tracks, a title or both")
        found, left_out = self._resolve(seed_tracks)
        if left_out:        # a warning a notebook shows (and the result names them)
            msg = f"{len(left_out)} seed URI(s) outside the catalogue left out: {', '.join(left_out[:5])}"
            log.warning(msg)
            warnings.warn(msg, stacklevel=2)
        if not found and not title:
            raise InputError(f"recommend: no seed is in the catalogue ({', '.join(left_out[:5])}"
                             f"{' ...' if len(left_out) > 5 else ''}) and no title was given: nothing to "
                             f"recommend from")
        seeds = np.array(found, np.int64)
        rec = self.ctx.recommender()
        ids, scores = rec.rank([seeds], [title], k)
        return self._result(ids[0], scores[0], self._served_by(rec, seeds), left_out)

    def _served_by(self, rec, seeds: np.ndarray) -> str:
        """What rank() served one request with: the ranker, or without one LightGCN, the item-based
        fallback (no seed embedded) or the title model (no seed); the ranker hands playlists
        without a seed to the title model when its cross-validation said so."""
        if self.ctx.method == "lightgcn":
            return rec.served_by([seeds])[0]
        return "title" if not len(seeds) and rec.cold == "title" else "ranker"

    def similar(self, track: str, k: int = 10) -> Recommendations:
        """The k tracks LightGCN puts nearest one track (a URI or a name), as `musicmap similar`:
        the embedding alone, never the re-ranker."""
        found, _ = self._resolve([track])
        if not found:
            raise InputError(f"similar: track {track!r} is not in the catalogue")
        seeds = similar_tracks.embedded_seeds(self.ctx, found)
        ids, scores = similar_tracks.similar(self.ctx, seeds, k)
        return self._result(ids, scores, "lightgcn")

    def _resolve(self, seed_tracks) -> tuple[list[int], list[str]]:
        """(track_idx of each seed, each once; the seeds left out). A URI outside the catalogue is
        left out, as the recommend job leaves out such seeds of a challenge playlist; a name must
        be one track's."""
        ids = [self._by_uri.get(s) if s.startswith(URI_PREFIX) else self._by_name(s) for s in seed_tracks]
        return list(dict.fromkeys(i for i in ids if i is not None)), [s for s, i in zip(seed_tracks, ids) if i is None]

    def _by_name(self, name: str) -> int:
        """The one track called `name`, or "name - artist" (as results print them) when several
        tracks share the name; else an error listing the closest matches."""
        try:
            return similar_tracks.resolve(self.tracks, [name], None, [], HINT)[0]
        except InputError:
            if " - " not in name:
                raise
            track, artist = name.rsplit(" - ", 1)
            return similar_tracks.resolve(self.tracks, [track], artist, [], HINT)[0]

    def _result(self, ids: np.ndarray, scores: np.ndarray, method: str, left_out=()) -> Recommendations:
        keep = ids >= 0
        ids, scores = ids[keep], scores[keep]
        t = self.tracks.take(pa.array(ids))
        names = [f"{n} - {a}" for n, a in zip(t["track_name"].to_pylist(), t["artist_name"].to_pylist())]
        return Recommendations(ids, t["track_uri"].to_pylist(), names, scores, method,
                               self.ctx.foldin_spec().mode, list(left_out))


def load(root: str, config: str | None = None, overrides: list[str] = ()) -> MusicMap:
    """The committed stages under `root` (a folder, s3:// or gs://), with conf/default.yaml's
    settings (or `config`'s, and `overrides` such as "recommend.method=lightgcn")."""
    cfg = load_config(config, list(overrides), root=root)
    storage.configure(cfg.storage)
    return MusicMap(load_context(cfg))
