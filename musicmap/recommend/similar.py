"""Tracks for a new playlist made of one or more seed tracks, printed as the seed system's table.

    musicmap similar --root URI --track "NAME" [--artist "NAME"] [--track "NAME2" ...] [--k 10]
    musicmap similar --root URI --track-uri spotify:track:... [--track-uri ...]

The seeds are folded in as a new playlist (train.foldin.foldin_vectors: the LightGCN propagation
of a node joined to the seed tracks) and scored against every track's final embedding; the
seeds themselves are never listed. A name matches case-insensitively; an unknown name, or one
that several tracks share (add --artist), is an error that lists the closest matches.
"""
from __future__ import annotations

import difflib

import numpy as np
import pyarrow as pa

from musicmap.config import config_from_args
from musicmap.errors import InputError
from musicmap.log import get_logger
from musicmap.recommend.context import load_context

log = get_logger("similar")


def resolve(tracks: pa.Table, names: list[str], artist: str | None, uris: list[str],
            hint: str = "add --artist or use --track-uri") -> list[int]:
    """track_idx of each seed given by name (optionally narrowed to an artist) or by URI; `hint`
    says how to pick one of several tracks sharing a name."""
    uri_col = tracks["track_uri"].to_pylist()
    name_col = tracks["track_name"].to_pylist()
    artist_col = tracks["artist_name"].to_pylist()
    out = []
    by_uri = {u: i for i, u in enumerate(uri_col)}
    for u in uris:
        if u not in by_uri:
            raise InputError(f"track URI {u!r} is not in the catalogue (the tracks of train "
                             f"playlists, graph.min_playlists)")
        out.append(by_uri[u])
    lname = [n.lower() for n in name_col]
    for name in names:
        hits = [i for i, n in enumerate(lname) if n == name.lower()]
        if artist:
            hits = [i for i in hits if artist_col[i].lower() == artist.lower()]
        label = f"{name!r}" + (f" by {artist!r}" if artist else "")
        if not hits:
            raise InputError(f"no track {label} in the catalogue"
                             + _closest(name, artist, name_col, artist_col))
        if len(hits) > 1:
            choices = sorted({f"{name_col[i]} - {artist_col[i]} ({uri_col[i]})" for i in hits})
            raise InputError(f"{len(hits)} tracks are called {label}; {hint}: {'; '.join(choices[:8])}")
        out.append(hits[0])
    return out


def _closest(name: str, artist: str | None, name_col: list[str], artist_col: list[str]) -> str:
    """'; closest: a - x; b - y' from names containing the query, else fuzzy matches."""
    q = name.lower()
    pool = [i for i, n in enumerate(name_col) if q in n.lower()]
    if artist:
        pool = [i for i in pool if artist.lower() in artist_col[i].lower()] or pool
    if not pool:
        unique = {n.lower(): i for i, n in enumerate(name_col)}
        pool = [unique[m] for m in difflib.get_close_matches(q, list(unique), n=5, cutoff=0.5)]
    labels = list(dict.fromkeys(f"{name_col[i]} - {artist_col[i]}" for i in pool))[:5]
    return f"; closest: {'; '.join(labels)}" if labels else ""


def recommender(ctx):
    """LightGCN alone with the model's fold-in (recommend.foldin): `similar` shows what the
    embedding learned, so it never goes through the re-ranker (the music map lists the same)."""
    return ctx.lightgcn()


def similar(ctx, seeds: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(track_idx (k,), scores (k,)) for a new playlist of the given seed tracks."""
    ranked, scores = recommender(ctx).rank([np.array(seeds, np.int64)], [None], k)
    keep = ranked[0] >= 0
    return ranked[0][keep], scores[0][keep]


def embedded_seeds(ctx, seeds: list[int]) -> list[int]:
    """The seeds LightGCN has a vector for; fails, saying why, when none has one."""
    T, counts = len(ctx.model.tracks), ctx.tracks["train_playlists"].to_numpy()
    rare = [s for s in seeds if s >= T]
    if rare:
        names = ctx.tracks["track_name"].to_pylist()
        why = "; ".join(f"{names[s]!r} is in {counts[s]} train playlist(s)" for s in rare[:5])
        msg = (f"LightGCN embeds only tracks in at least {ctx.model.manifest.get('embed_min_playlists', 1)} "
               f"train playlists (model.embed_min_playlists): {why}")
        if len(rare) == len(seeds):
            raise InputError(msg + "; `musicmap recommend` still reaches them through RP3beta and co-occurrence")
        log.warning("%s; left out of the seeds", msg)
    return [s for s in seeds if s < T]


def format_table(tracks: pa.Table, seeds: list[int], ranked, scores) -> str:
    name, artist = tracks["track_name"].to_pylist(), tracks["artist_name"].to_pylist()
    lines = [f"--- Top {len(ranked)} tracks for a new playlist with {len(seeds)} seed track"
             f"{'s' if len(seeds) != 1 else ''} ---"]
    lines += [f"  Seed Track: {name[s]} - {artist[s]} (ID: {s})" for s in seeds]
    lines.append("")
    lines.append("Displaying: Rank | Track ID | Track - Artist | Score")
    lines += [f"  Rank {r:02d} | {t:>7} | {name[t]} - {artist[t]} (Score: {s:.4f})"
              for r, (t, s) in enumerate(zip(ranked, scores), 1)]
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--track", action="append", default=[], metavar="NAME",
                   help="seed track name (repeatable)")
    p.add_argument("--artist", metavar="NAME", help="artist of the --track names (disambiguates)")
    p.add_argument("--track-uri", action="append", default=[], metavar="URI",
                   help="seed track URI (repeatable)")
    p.add_argument("--k", type=int, default=10, help="tracks to list (default 10)")


def run_cli(args) -> int:
    if not args.track and not args.track_uri:
        raise InputError("give at least one --track NAME or --track-uri URI")
    cfg = config_from_args(args)
    ctx = load_context(cfg, ranker=False)   # similar never uses the ranker
    seeds = embedded_seeds(ctx, resolve(ctx.tracks, args.track, args.artist, args.track_uri))
    ranked, scores = similar(ctx, seeds, args.k)
    print(format_table(ctx.tracks, seeds, ranked, scores))
    return 0
