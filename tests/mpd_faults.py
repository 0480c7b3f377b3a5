"""Corrupt copies of generated MPD slices, one fault per playlist or file, with what a reader must
report for each. Used by the checker, build_graph and the end-to-end bad-input tests.

    faults = make_bad_dataset(src_dir, dst_dir)
    faults.playlists   {(file, pid): rule}   playlists that break a rule (the rest stay valid)
    faults.files       {file: rule}          files that cannot be read at all
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from musicmap import mpd


@dataclass
class Faults:
    playlists: dict[tuple[str, int], str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    file_playlists: dict[str, int] = field(default_factory=dict)  # playlists inside unreadable files


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _dump(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=4, ensure_ascii=False))


def recount(p: dict) -> None:
    """Make a playlist's counts agree with its tracks again (so only the intended rule breaks)."""
    t = p["tracks"]
    for i, x in enumerate(t):
        x["pos"] = i
    p["num_tracks"] = len(t)
    p["num_artists"] = len({x["artist_uri"] for x in t})
    p["num_albums"] = len({x["album_uri"] for x in t})
    p["duration_ms"] = sum(x["duration_ms"] for x in t)


def make_bad_dataset(src: Path, dst: Path, file_faults: bool = True,
                     encoding_faults: bool = True) -> Faults:
    """Copy the first three slices of src into dst and break them; with file_faults also add an
    invalid-JSON and a truncated file, with encoding_faults a non-UTF-8 and an empty file.
    Playlist faults are spread over the three copied slices."""
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("mpd.slice.*.json"), key=lambda f: mpd.slice_sort_key(f.name))[:3]
    assert len(files) == 3, "need three generated slices"
    docs = {f.name: _load(f) for f in files}
    names = [f.name for f in files]
    out = Faults()
    a, b, c = (docs[n]["playlists"] for n in names)

    def mark(fname: str, p: dict, rule: str) -> None:
        out.playlists[(fname, p["pid"])] = rule

    # slice 0: structure faults
    del a[10]["num_followers"]
    mark(names[0], a[10], "missing_field")
    a[11]["num_edits"] = "3"
    mark(names[0], a[11], "wrong_type")
    a[12]["tracks"][3]["pos"] = 7
    mark(names[0], a[12], "pos_mismatch")
    a[13]["tracks"][0]["track_uri"] = "spotify:song:" + a[13]["tracks"][0]["track_uri"][-22:]
    mark(names[0], a[13], "bad_uri")
    # slice 1: value faults
    p = next(x for x in b[20:] if x["num_tracks"] >= 12 and x["num_artists"] >= 6)
    p["tracks"] = p["tracks"][:4]
    recount(p)
    mark(names[1], p, "too_few_tracks")
    q = next(x for x in b[40:] if x["num_tracks"] >= 60)
    pool = [t for x in b for t in x["tracks"] if t["track_uri"] not in {y["track_uri"] for y in q["tracks"]}]
    seen, extra = {y["track_uri"] for y in q["tracks"]}, []
    for t in pool:
        if t["track_uri"] not in seen and len(q["tracks"]) + len(extra) < 251:
            seen.add(t["track_uri"])
            extra.append(dict(t))
    q["tracks"] += extra
    recount(q)
    assert q["num_tracks"] == 251
    mark(names[1], q, "too_many_tracks")
    b[5]["num_artists"] += 1
    mark(names[1], b[5], "num_artists_mismatch")
    b[6]["num_tracks"] -= 1
    mark(names[1], b[6], "num_tracks_mismatch")
    # the rest of the value rules, one playlist each (slice 1, from playlist 60 on)
    rest = iter(x for x in b[60:] if x["num_tracks"] >= 10 and x["num_artists"] >= 4 and x["num_albums"] >= 3
                and (names[1], x["pid"]) not in out.playlists)

    def fault(rule: str, edit) -> None:
        x = next(rest)
        edit(x)
        mark(names[1], x, rule)
    fault("unknown_field", lambda x: x.__setitem__("num_listeners", 3))
    fault("empty_name", lambda x: x.__setitem__("name", "  "))
    fault("bad_collaborative", lambda x: x.__setitem__("collaborative", "yes"))
    fault("bad_followers", lambda x: x.__setitem__("num_followers", 0))
    fault("bad_edits", lambda x: x.__setitem__("num_edits", 0))
    fault("num_albums_mismatch", lambda x: x.__setitem__("num_albums", x["num_albums"] + 1))
    fault("duration_mismatch", lambda x: x.__setitem__("duration_ms", x["duration_ms"] + 1))
    fault("too_few_artists", lambda x: ([t.update(artist_uri=x["tracks"][0]["artist_uri"]) for t in x["tracks"]],
                                        recount(x)))
    fault("too_few_albums", lambda x: ([t.update(album_uri=x["tracks"][0]["album_uri"]) for t in x["tracks"]],
                                       recount(x)))
    # slice 2: dataset-level faults
    dup = json.loads(json.dumps(a[0]))
    c.append(dup)
    mark(names[2], dup, "duplicate_pid")
    first_names = {}
    for x in a:                       # names as first seen (slice 0 comes first)
        for t in x["tracks"]:
            first_names.setdefault(t["track_uri"], t["track_name"])
    popular = Counter(t["track_uri"] for x in a for t in x["tracks"]).most_common(1)[0][0]
    victim = next(x for x in c[30:-1] if popular in {t["track_uri"] for t in x["tracks"]})
    for t in victim["tracks"]:
        if t["track_uri"] == popular:
            t["track_name"] = first_names[popular] + " (Remastered)"
    mark(names[2], victim, "track_name_conflict")
    for n in names:
        _dump(dst / n, docs[n])

    if file_faults:
        text = (dst / names[0]).read_text()
        bad = dst / mpd.slice_name(900000, 900999)
        mid = text.index("\n", len(text) // 2) + 1     # a line start: outside any string
        bad.write_text(text[:mid] + "}{" + text[mid:])
        out.files[bad.name] = "invalid_json"
        trunc = dst / mpd.slice_name(901000, 901999)
        trunc.write_text(text[: len(text) * 2 // 3])
        out.files[trunc.name] = "truncated"
        shape = dst / mpd.slice_name(904000, 904999)
        shape.write_text(json.dumps({"info": {"slice": "904000-904999"}, "playlists": {"pid": 1}}))
        out.files[shape.name] = "bad_structure"
        out.file_playlists.update({bad.name: len(a), trunc.name: len(a), shape.name: 0})
    if encoding_faults:
        raw = (dst / names[1]).read_bytes()
        i = raw.index(b'"name": "') + len(b'"name": "')
        nu = dst / mpd.slice_name(902000, 902999)
        nu.write_bytes(raw[:i] + b"\xff\xfe" + raw[i:])
        out.files[nu.name] = "not_utf8"
        empty = dst / mpd.slice_name(903000, 903999)
        empty.write_bytes(b"")
        out.files[empty.name] = "empty_file"
        out.file_playlists.update({nu.name: len(b), empty.name: 0})
    return out


def copy_slices(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("mpd.slice.*.json"):
        shutil.copy(f, dst / f.name)
