"""The RecSys Challenge 2018 submission format: write it, and validate it with the challenge's
rules (the checks the organisers' verifier applies).

    team_info,<team name>,<contact email>
    <pid>,<track_uri 1>,...,<track_uri 500>          one line per challenge playlist

`#` lines and blank lines are ignored; gzipped for upload.
"""
from __future__ import annotations

import gzip
import json

from musicmap import mpd, storage
from musicmap.errors import InputError

SUBMISSION_SIZE = 500


def write_submission(uri: str, team: str, contact: str, rows: list[tuple[int, list[str]]]) -> None:
    lines = ["# RecSys Challenge 2018 submission written by musicmap",
             f"team_info,{team},{contact}"]
    lines += [",".join([str(pid), *uris]) for pid, uris in rows]
    storage.write_bytes(uri, gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0))


def read_challenge(uri: str) -> list[dict]:
    """challenge_set.json's playlists: pid, name (None when hidden), seed track URIs. A file that
    is not a readable challenge set is an InputError naming the file and the first problem."""
    try:
        doc = json.loads(storage.read_bytes(uri).decode("utf-8-sig"))
    except (UnicodeDecodeError, RecursionError, json.JSONDecodeError) as e:
        raise InputError(f"{uri}: not a readable JSON challenge set ({type(e).__name__}: {e})") from None
    problem = _challenge_problem(doc)
    if problem:
        raise InputError(f"{uri}: {problem}")
    return [{"pid": p["pid"], "name": p.get("name"), "num_holdouts": p.get("num_holdouts"),
             "seeds": [t["track_uri"] for t in p.get("tracks", [])]} for p in doc["playlists"]]


def _challenge_problem(doc) -> str | None:
    """The first thing that makes `doc` not a challenge set, or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("playlists"), list):
        return "the top level must be an object with a 'playlists' list"
    seen = set()
    for i, p in enumerate(doc["playlists"]):
        where = f"playlists[{i}]"
        if not isinstance(p, dict):
            return f"{where} is {type(p).__name__}, not an object"
        pid = p.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or not mpd.INT64[0] <= pid <= mpd.INT64[1]:
            return f"{where} has no integer 'pid' (got {pid!r})"
        if pid in seen:
            return f"pid {pid} is given twice ({where})"
        seen.add(pid)
        if p.get("name") is not None and not isinstance(p["name"], str):
            return f"{where} (pid {pid}): 'name' must be a string"
        tracks = p.get("tracks", [])
        if not isinstance(tracks, list):
            return f"{where} (pid {pid}): 'tracks' must be a list of seed tracks"
        for j, t in enumerate(tracks):
            if not isinstance(t, dict) or not isinstance(t.get("track_uri"), str):
                return f"{where} (pid {pid}): tracks[{j}] has no 'track_uri' string"
    return None


def validate_submission(uri: str, challenge: list[dict]) -> list[str]:
    """Every problem with a submission file against the challenge set ([] when valid)."""
    raw = storage.read_bytes(uri)
    text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode("utf-8")
    errors: list[str] = []
    lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines or not lines[0][1].startswith("team_info,"):
        return ["first non-comment line must be 'team_info,<team name>,<contact email>'"]
    if len(lines[0][1].split(",")) != 3:
        errors.append(f"line {lines[0][0]}: team_info needs exactly a team name and an email")
    seeds = {p["pid"]: set(p["seeds"]) for p in challenge}
    seen: set[int] = set()
    for n, ln in lines[1:]:
        fields = [f.strip() for f in ln.split(",")]
        try:
            pid = int(fields[0])
        except ValueError:
            errors.append(f"line {n}: bad pid {fields[0]!r}")
            continue
        uris = fields[1:]
        if pid not in seeds:
            errors.append(f"line {n}: pid {pid} is not in the challenge set")
            continue
        if pid in seen:
            errors.append(f"line {n}: pid {pid} appears twice")
        seen.add(pid)
        if len(uris) != SUBMISSION_SIZE:
            errors.append(f"line {n}: pid {pid} has {len(uris)} tracks, not {SUBMISSION_SIZE}")
        if len(set(uris)) != len(uris):
            errors.append(f"line {n}: pid {pid} repeats a track")
        bad = [u for u in uris if not mpd.URI_RE["track_uri"].fullmatch(u)]
        if bad:
            errors.append(f"line {n}: pid {pid} has a malformed track URI {bad[0]!r}")
        if seeds[pid] & set(uris):
            errors.append(f"line {n}: pid {pid} recommends a seed track")
    missing = set(seeds) - seen
    if missing:
        errors.append(f"{len(missing)} challenge playlists missing, e.g. pid {min(missing)}")
    return errors
