"""The Million Playlist Dataset format and the dataset's own validity rules: the one definition
used by the generator (musicmap.synth), the checker (musicmap.check) and the Spark reader
(spark_jobs.mpd_source).

A slice file is `mpd.slice.<first>-<last>.json`:
    {"info": {"slice": "0-999", "version": "v1", "generated_on": ...}, "playlists": [...]}
"""
from __future__ import annotations

import gzip
import json
import re
import unicodedata
import zlib
from dataclasses import dataclass

# field -> accepted Python type(s) (json gives int for integers; bool is rejected separately)
PLAYLIST_FIELDS: dict[str, type] = {
    "name": str, "collaborative": str, "pid": int, "modified_at": int, "num_tracks": int,
    "num_albums": int, "num_followers": int, "tracks": list, "num_edits": int,
    "duration_ms": int, "num_artists": int,
}
OPTIONAL_PLAYLIST_FIELDS: dict[str, type] = {"description": str}
TRACK_FIELDS: dict[str, type] = {
    "pos": int, "artist_name": str, "track_uri": str, "artist_uri": str, "track_name": str,
    "album_uri": str, "duration_ms": int, "album_name": str,
}
TRACK_KEYS = frozenset(TRACK_FIELDS)
REQUIRED_KEYS = frozenset(PLAYLIST_FIELDS)
ALLOWED_KEYS = REQUIRED_KEYS | frozenset(OPTIONAL_PLAYLIST_FIELDS)

MIN_TRACKS, MAX_TRACKS = 5, 250
MIN_ARTISTS, MIN_ALBUMS = 3, 2
URI_RE = {
    "track_uri": re.compile(r"spotify:track:[0-9A-Za-z]{22}"),
    "artist_uri": re.compile(r"spotify:artist:[0-9A-Za-z]{22}"),
    "album_uri": re.compile(r"spotify:album:[0-9A-Za-z]{22}"),
}
SLICE_RE = re.compile(r"mpd\.slice\.(\d+)-(\d+)\.json(\.gz)?$")
INT64 = (-2 ** 63, 2 ** 63 - 1)    # what Parquet and Spark hold; a JSON integer can be any size

# Rule names, as reported by the checker and written to graph/quarantine.
FILE_RULES = ("empty_file", "not_utf8", "truncated", "invalid_json", "bad_structure",
              "bad_compression", "vanished", "changed_during_read")
PLAYLIST_RULES = (
    "missing_field", "unknown_field", "wrong_type", "int_out_of_range", "invalid_unicode",
    "empty_name", "too_few_tracks",
    "too_many_tracks", "pos_mismatch", "num_tracks_mismatch", "num_albums_mismatch",
    "num_artists_mismatch", "duration_mismatch", "too_few_artists", "too_few_albums",
    "bad_followers", "bad_edits", "bad_uri", "bad_collaborative",
)
DATASET_RULES = ("duplicate_pid", "track_name_conflict")


def slice_name(first: int, last: int) -> str:
    return f"mpd.slice.{first}-{last}.json"


def slice_sort_key(name: str):
    """Slices in pid order (mpd.slice.2000-2999 after mpd.slice.999-1999), others by name."""
    m = SLICE_RE.search(name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


@dataclass
class Violation:
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


def _type_ok(value, typ) -> bool:
    return isinstance(value, typ) and not (typ is int and isinstance(value, bool))


def validate_playlist(p) -> list[Violation]:
    """Every rule the playlist breaks on its own (cross-playlist rules are checked by callers).
    Returns [] for a valid playlist."""
    broken = _structure(p)
    if broken:
        return broken  # the value rules would only repeat it
    out = _playlist_values(p)
    found, artists, albums, duration, stop = _track_values(p["tracks"])
    out += found
    if stop:
        return out
    for rule, field, got in (("num_artists_mismatch", "num_artists", len(artists)),
                             ("num_albums_mismatch", "num_albums", len(albums))):
        if p[field] != got:
            out.append(Violation(rule, f"{field}={p[field]} but {got} distinct"))
    if p["duration_ms"] != duration:
        out.append(Violation("duration_mismatch", f"duration_ms={p['duration_ms']} but tracks sum to {duration}"))
    if len(artists) < MIN_ARTISTS:
        out.append(Violation("too_few_artists", f"{len(artists)} artists < {MIN_ARTISTS}"))
    if len(albums) < MIN_ALBUMS:
        out.append(Violation("too_few_albums", f"{len(albums)} albums < {MIN_ALBUMS}"))
    # pos_mismatch on every track of a shifted list is one problem, so it is reported once
    pos = [v for v in out if v.rule == "pos_mismatch"]
    if len(pos) > 1:
        out = [v for v in out if v.rule != "pos_mismatch"]
        out.insert(0, Violation("pos_mismatch", f"{pos[0].detail} (and {len(pos) - 1} more)"))
    return out


def _structure(p) -> list[Violation]:
    """What makes the playlist's values unreadable: not an object, missing or unknown fields,
    wrong types, integers beyond 64 bits, broken text."""
    if not isinstance(p, dict):
        return [Violation("wrong_type", f"playlist is {type(p).__name__}, not an object")]
    out: list[Violation] = []
    keys = p.keys()
    if not REQUIRED_KEYS <= keys:
        out.append(Violation("missing_field", ", ".join(sorted(REQUIRED_KEYS - keys))))
    if not keys <= ALLOWED_KEYS:
        out.append(Violation("unknown_field", ", ".join(sorted(keys - ALLOWED_KEYS))))
    bad_types = [f"{k}={type(p[k]).__name__}" for k, t in
                 (*PLAYLIST_FIELDS.items(), *OPTIONAL_PLAYLIST_FIELDS.items())
                 if k in p and not _type_ok(p[k], t)]
    if bad_types:
        out.append(Violation("wrong_type", ", ".join(bad_types)))
    if out:
        return out
    huge = [k for k, t in PLAYLIST_FIELDS.items() if t is int and not INT64[0] <= p[k] <= INT64[1]]
    if huge:
        return [Violation("int_out_of_range", f"{huge[0]}={p[huge[0]]} is outside 64-bit integers")]
    bad_text = _bad_unicode([p["name"], p.get("description", "")])
    return [Violation("invalid_unicode", bad_text)] if bad_text else []


def _playlist_values(p: dict) -> list[Violation]:
    out = []
    if not p["name"].strip():
        out.append(Violation("empty_name", "name is empty"))
    if p["collaborative"] not in ("true", "false"):
        out.append(Violation("bad_collaborative", f"collaborative={p['collaborative']!r}"))
    if p["num_followers"] < 1:
        out.append(Violation("bad_followers", f"num_followers={p['num_followers']} < 1"))
    if p["num_edits"] < 1:
        out.append(Violation("bad_edits", f"num_edits={p['num_edits']} < 1"))
    n = len(p["tracks"])
    if n < MIN_TRACKS:
        out.append(Violation("too_few_tracks", f"{n} tracks < {MIN_TRACKS}"))
    elif n > MAX_TRACKS:
        out.append(Violation("too_many_tracks", f"{n} tracks > {MAX_TRACKS}"))
    if p["num_tracks"] != n:
        out.append(Violation("num_tracks_mismatch", f"num_tracks={p['num_tracks']} but {n} tracks"))
    return out


def _track_values(tracks: list):
    """(violations, artists, albums, total duration, stop) over the tracks. stop: a track is
    unreadable (the first such is reported and the totals are not checked)."""
    out, artists, albums, duration = [], set(), set(), 0
    track_re, artist_re, album_re = (URI_RE[k].fullmatch for k in ("track_uri", "artist_uri", "album_uri"))
    for i, t in enumerate(tracks):
        broken = _track_structure(i, t)
        if broken:
            return out + broken, artists, albums, duration, True
        if t["pos"] != i:
            out.append(Violation("pos_mismatch", f"tracks[{i}].pos={t['pos']}"))
        if not (track_re(t["track_uri"]) and artist_re(t["artist_uri"]) and album_re(t["album_uri"])):
            which = [k for k in URI_RE if not URI_RE[k].fullmatch(t[k])]
            out.append(Violation("bad_uri", f"tracks[{i}].{which[0]}={t[which[0]]!r}"))
        artists.add(t["artist_uri"])
        albums.add(t["album_uri"])
        duration += t["duration_ms"]
    return out, artists, albums, duration, False


def _track_structure(i: int, t) -> list[Violation]:
    """What makes track i unreadable: not an object, missing or unknown fields, wrong types,
    a duration beyond 64 bits, broken text."""
    if not isinstance(t, dict):
        return [Violation("wrong_type", f"tracks[{i}] is {type(t).__name__}")]
    if t.keys() != TRACK_KEYS:
        missing, extra = TRACK_KEYS - t.keys(), t.keys() - TRACK_KEYS
        return ([Violation("missing_field", f"tracks[{i}]: {', '.join(sorted(missing))}")] if missing else []) + \
            ([Violation("unknown_field", f"tracks[{i}]: {', '.join(sorted(extra))}")] if extra else [])
    bad = [f"{k}={type(t[k]).__name__}" for k, typ in TRACK_FIELDS.items() if not _type_ok(t[k], typ)]
    if bad:
        return [Violation("wrong_type", f"tracks[{i}]: {', '.join(bad)}")]
    if not INT64[0] <= t["duration_ms"] <= INT64[1]:
        return [Violation("int_out_of_range", f"tracks[{i}].duration_ms={t['duration_ms']} is outside 64-bit integers")]
    bad_text = _bad_unicode([t["track_name"], t["artist_name"], t["album_name"]])
    return [Violation("invalid_unicode", f"tracks[{i}]: {bad_text}")] if bad_text else []


def _bad_unicode(texts: list[str]) -> str:
    """'' when every string is valid Unicode, else what is wrong. JSON's \\u escapes can spell a
    lone surrogate (half of a pair), which Python keeps but no UTF-8 file or Arrow array can hold."""
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError as e:
        return f"a lone surrogate \\u{ord(e.object[e.start]):04x} in a string"
    return ""


class SliceError(Exception):
    """A slice file that cannot be read as a whole: .rule is one of FILE_RULES."""

    def __init__(self, rule: str, detail: str):
        super().__init__(f"{rule}: {detail}")
        self.rule, self.detail = rule, detail


def decompress(name: str, data: bytes) -> bytes:
    """A slice file's JSON bytes: gunzipped when its name ends in .gz (SliceError if that fails)."""
    if not name.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise SliceError("bad_compression", f"not a complete gzip file ({e})") from None


def parse_slice(data: bytes) -> list:
    """The playlists list of one slice file's (decompressed) bytes, or SliceError(rule, detail).
    A UTF-8 byte-order mark is skipped (JSON allows a reader to), as pyarrow's parser does."""
    if not data.strip():
        raise SliceError("empty_file", f"{len(data)} bytes, no JSON")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SliceError("not_utf8", f"byte {e.start} is not UTF-8 ({e.reason})") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise SliceError("invalid_json", "arrays or objects nested too deeply to read") from None
    except json.JSONDecodeError as e:
        # the text ends before the document does: at the error, or inside a string that never closes
        if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):
            raise SliceError("truncated", f"JSON ends early at char {e.pos} ({e.msg})") from None
        raise SliceError("invalid_json", f"line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("playlists"), list):
        raise SliceError("bad_structure", "top level must be an object with a 'playlists' list")
    if not isinstance(doc.get("info"), dict):
        raise SliceError("bad_structure", "top level has no 'info' object")
    return doc["playlists"]


_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize_title(name: str | None) -> str:
    """Lower case, accents and punctuation (and emoji) stripped, spaces collapsed: the
    challenge organisers' normalisation of playlist titles."""
    if not name:
        return ""
    s = unicodedata.normalize("NFKD", name.lower())
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = _PUNCT.sub(" ", s).replace("_", " ")
    return _SPACE.sub(" ", s).strip()


@dataclass(frozen=True)
class Category:
    """One of the RecSys Challenge 2018 categories: `seeds` tracks given (first ones or random),
    title shown or not; a playlist needs at least `min_tracks` tracks to be used for it."""
    name: str
    seeds: int
    title: bool
    random: bool
    min_tracks: int


CHALLENGE_CATEGORIES: tuple[Category, ...] = (
    Category("title_only", 0, True, False, 10),
    Category("title_first1", 1, True, False, 10),
    Category("title_first5", 5, True, False, 10),
    Category("first5", 5, False, False, 10),
    Category("title_first10", 10, True, False, 20),
    Category("first10", 10, False, False, 20),
    Category("title_first25", 25, True, False, 40),
    Category("title_random25", 25, True, True, 40),
    Category("title_first100", 100, True, False, 150),
    Category("title_random100", 100, True, True, 150),
)
SEED_PROTOCOL = "seed_half"  # the seed system's protocol: first half of the playlist as seeds
