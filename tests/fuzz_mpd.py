"""Corrupted MPD slices for the fuzz tests: a plan (a tuple of choices) turns one small valid
slice into bytes with a fault at some level, and is drawn either by Hypothesis (`plans()`) or by
a seeded random.Random (`random_plan`), so the Spark test and the property test share it.

    name, data = corrupt(base_doc(), plan)      # "mpd.slice.0-999.json[.gz]", the file's bytes

Levels: the whole document (wrong top-level types, missing or extra keys, deep nesting), a
playlist field, a track field (huge and negative integers, floats, NaN/Infinity, bools, nulls,
strings with lone surrogates, control characters, very long values, nested values), the bytes
(cut at any byte, invalid UTF-8, an empty file, a byte-order mark) and compression (gzip, gzip
cut short).
"""
from __future__ import annotations

import copy
import gzip
import json
import random
from functools import lru_cache

import numpy as np
from mpd_faults import recount

NAME = "mpd.slice.0-999.json"
DEEP = "\"__deep__\""


@lru_cache(maxsize=1)
def _base_text() -> str:
    from musicmap import synth
    cat = synth.Catalogue(5000, 24, 3)
    gen = synth.Generator(cat)
    rng = np.random.default_rng([3, 2, 0])
    playlists = gen.playlists(0, 8, rng)
    return gen.render_slice(playlists, 0, 999, "2017-12-03T08:41:42.057563")


def base_doc() -> dict:
    return json.loads(_base_text())


# Values a field may be replaced with (all of them JSON-encodable, NaN/Infinity as literals).
VALUES = [2 ** 63, -2 ** 63 - 1, 2 ** 70, -(2 ** 70), 2 ** 63 - 1, -1, 0, 1.5, -0.0, float("nan"),
          float("inf"), True, False, None, "", "   ", "x" * 20000, "bad \ud800 x", "\udfff", "a\x00b\x1f",
          "\u202e\ufeff", [], {}, [1, [2, [3]]], {"a": {"b": 1}}, "spotify:track:" + "A" * 22,
          "spotify:track:short", DEEP]


def _break_rule(p: dict, which: int, c: int) -> None:
    """A playlist that is well formed but breaks one value rule of musicmap.mpd."""
    t = p["tracks"]
    faults = [
        lambda: p.__setitem__("num_followers", -c),                          # bad_followers
        lambda: p.__setitem__("num_edits", 0),                               # bad_edits
        lambda: p.__setitem__("name", " " * (c % 3)),                        # empty_name
        lambda: p.__setitem__("collaborative", ["yes", "True", "1", ""][c % 4]),
        lambda: p.__setitem__("num_albums", p["num_albums"] + 1 + c),        # num_albums_mismatch
        lambda: p.__setitem__("num_artists", max(0, p["num_artists"] - 1)),  # num_artists_mismatch
        lambda: p.__setitem__("duration_ms", p["duration_ms"] + 1),          # duration_mismatch
        lambda: p.__setitem__("num_tracks", p["num_tracks"] + 1),            # num_tracks_mismatch
        lambda: [x.update(artist_uri=t[0]["artist_uri"]) for x in t] and recount(p),   # too_few_artists
        lambda: [x.update(album_uri=t[0]["album_uri"]) for x in t] and recount(p),     # too_few_albums
        lambda: (p.__setitem__("tracks", t[:c % 5]), recount(p)),          # too_few_tracks
        lambda: (p.__setitem__("tracks", (t * 60)[:251 + c]), recount(p)),  # too_many_tracks
        lambda: t[c % len(t)].__setitem__("pos", c % len(t) + 1),            # pos_mismatch
        lambda: t[c % len(t)].__setitem__("track_uri", "spotify:track:" + "!" * 22),   # bad_uri
        lambda: t[c % len(t)].__setitem__("album_uri", "spotify:artist:" + "A" * 22),  # bad_uri
        lambda: (t[c % len(t)].__setitem__("duration_ms", 2 ** 63), recount(p)),      # int_out_of_range
        lambda: p.__setitem__("modified_at", -2 ** 63 - 1 - c),              # int_out_of_range
        lambda: t[c % len(t)].__setitem__("track_name", "x\udc80y"),         # invalid_unicode
        lambda: p.__setitem__("description", "\ud83d"),                      # invalid_unicode
        lambda: t.append(dict(t[0])) or recount(p),                         # a repeat: still valid
    ]
    faults[which % len(faults)]()


def corrupt(doc: dict, plan: tuple) -> tuple[str, bytes]:
    """The (file name, bytes) of `doc` broken as `plan` says:
    (level, a, b, c, value_index, byte_op, position, ascii, compress)."""
    level, a, b, c, v, byte_op, position, ascii_, compress = plan
    doc = copy.deepcopy(doc)
    value = VALUES[v % len(VALUES)]
    pls = doc["playlists"]
    p = pls[a % len(pls)]
    if level == "rule":
        _break_rule(p, b, c)
    elif level == "document":
        choice = b % 6
        if choice == 0:
            doc = [doc] if c % 2 else "playlists"
        elif choice == 1:
            doc.pop("info" if c % 2 else "playlists")
        elif choice == 2:
            doc["extra"] = value
        elif choice == 3:
            doc["playlists"] = value
        elif choice == 4:
            doc["info"] = value
        else:
            pls.insert(a % (len(pls) + 1), value)
    elif level == "playlist":
        keys = sorted(p)
        choice = b % 4
        if choice == 0:
            p.pop(keys[c % len(keys)])
        elif choice == 1:
            p[f"extra_{c}"] = value
        else:
            p[keys[c % len(keys)]] = value
    elif level == "track":
        t = p["tracks"][c % len(p["tracks"])]
        keys = sorted(t)
        choice = b % 4
        if choice == 0:
            t.pop(keys[c % len(keys)])
        elif choice == 1:
            p["tracks"].insert(c % len(p["tracks"]), value)
        else:
            t[keys[(b + c) % len(keys)]] = value
    text = json.dumps(doc, indent=4, ensure_ascii=ascii_)
    text = text.replace(DEEP, "[" * 3000 + "]" * 3000)
    data = text.encode("utf-8", "surrogatepass")
    data = _bytes(data, byte_op, position)
    if compress:
        data = gzip.compress(data, mtime=0)
        if compress == 2:
            data = data[: max(1, int(len(data) * (position % 1000) / 1000))]
        return NAME + ".gz", data
    return NAME, data


def _bytes(data: bytes, op: int, position: int) -> bytes:
    at = position % (len(data) + 1)
    if op == 1:
        return data[:at]                                   # cut at any byte
    if op == 2:
        return data[:at] + b"\xff\xfe\xc3" + data[at:]     # invalid UTF-8
    if op == 3:
        return b""
    if op == 4:
        return b"\xef\xbb\xbf" + data                      # a byte-order mark
    if op == 5:
        return data[:at] + b"\x00" + data[at:]
    return data


LEVELS = ("rule", "rule", "rule", "document", "playlist", "track", "none")
BYTE_OPS = [0] * 12 + [1, 2, 3, 4, 5]
COMPRESS = [0] * 8 + [1, 2]


def plans():
    """The Hypothesis strategy of plans."""
    from hypothesis import strategies as st
    return st.tuples(st.sampled_from(LEVELS), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50),
                     st.integers(0, len(VALUES) - 1), st.sampled_from(BYTE_OPS),
                     st.integers(0, 10 ** 7), st.booleans(), st.sampled_from(COMPRESS))


def random_plan(rng: random.Random) -> tuple:
    return (rng.choice(LEVELS), rng.randrange(51), rng.randrange(51), rng.randrange(51),
            rng.randrange(len(VALUES)), rng.choice(BYTE_OPS), rng.randrange(10 ** 7),
            rng.random() < 0.5, rng.choice(COMPRESS))
