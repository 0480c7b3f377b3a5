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
matches); a URI outside the catalogue is left out, as the recommend job leaves out such seeds.
"""
from __future__ import annotations

from dataclasses import dataclass

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
    method: str           # ranker, lightgcn or title
    foldin: str           # how the seeds became LightGCN's query (recommend.foldin)

    def __len__(self) -> int:
        return len(self.ids)

    def __str__(self) -> str:
        head = f"{len(self)} tracks ({self.method}, fold-in {self.foldin}):"
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
        never a seed. With neither, an error."""
        if isinstance(seed_tracks, str):
            seed_tracks = [seed_tracks]
        if not seed_tracks and not title:
            raise InputError("recommend: give seed_tracks, a title or both")
        seeds = np.array(self._resolve(seed_tracks), np.int64)
        rec = self.ctx.recommender()
        ids, scores = rec.rank([seeds], [title], k)
        # Without a seed LightGCN has no query: the title model serves, and the ranker hands
        # such playlists to it too when its cross-validation said so.
        title_only = not len(seeds) and (self.ctx.method == "lightgcn" or rec.cold == "title")
        return self._result(ids[0], scores[0], "title" if title_only else self.ctx.method)

    def similar(self, track: str, k: int = 10) -> Recommendations:
        """The k tracks LightGCN puts nearest one track (a URI or a name), as `musicmap similar`:
        the embedding alone, never the re-ranker."""
        found = self._resolve([track])
        if not found:
            raise InputError(f"similar: track {track!r} is not in the catalogue")
        seeds = similar_tracks.embedded_seeds(self.ctx, found)
        ids, scores = similar_tracks.similar(self.ctx, seeds, k)
        return self._result(ids, scores, "lightgcn")

    def _resolve(self, seed_tracks) -> list[int]:
        """track_idx of each seed, each once. A URI outside the catalogue is left out, as the
        recommend job leaves out such seeds of a challenge playlist; a name must be one track's."""
        ids = [self._by_uri.get(s) if s.startswith(URI_PREFIX) else self._by_name(s) for s in seed_tracks]
        unknown = [s for s, i in zip(seed_tracks, ids) if i is None]
        if unknown:
            log.info("%d seed URI(s) outside the catalogue left out: %s", len(unknown), ", ".join(unknown[:5]))
        return list(dict.fromkeys(i for i in ids if i is not None))

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

    def _result(self, ids: np.ndarray, scores: np.ndarray, method: str) -> Recommendations:
        keep = ids >= 0
        ids, scores = ids[keep], scores[keep]
        t = self.tracks.take(pa.array(ids))
        names = [f"{n} - {a}" for n, a in zip(t["track_name"].to_pylist(), t["artist_name"].to_pylist())]
        return Recommendations(ids, t["track_uri"].to_pylist(), names, scores, method,
                               self.ctx.foldin_spec().mode)


def load(root: str, config: str | None = None, overrides: list[str] = ()) -> MusicMap:
    """The committed stages under `root` (a folder, s3:// or gs://), with conf/default.yaml's
    settings (or `config`'s, and `overrides` such as "recommend.method=lightgcn")."""
    cfg = load_config(config, list(overrides), root=root)
    storage.configure(cfg.storage)
    return MusicMap(load_context(cfg))
