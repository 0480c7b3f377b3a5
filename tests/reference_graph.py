"""A single-process, plain-Python build of the graph: the same work as musicmap/spark_jobs/graph.py (parse
and check every slice with musicmap.mpd, quarantine, time split, train-only filters, dense ids,
weighted edges, evaluation cases, Parquet output), written the obvious way with json, dicts and
pyarrow. It is the independent implementation that tests/test_build_graph.py checks the Spark job's
tables with (the test oracle), and the reference bench/bench_build_graph.py times the Spark job
against.

    python tests/reference_graph.py MPD_DIR OUT_DIR [--set graph.min_playlists=5 ...]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from musicmap import cases, mpd, schemas
from musicmap.check import slice_files
from musicmap.config import load_config


def first_occurrences(p):
    """The playlist's tracks, each URI at its first position only."""
    seen = set()
    for t in p["tracks"]:
        if t["track_uri"] not in seen:
            seen.add(t["track_uri"])
            yield t


def read(mpd_dir: str) -> tuple[list, list, int, int]:
    """(valid (file, playlist) pairs, quarantine rows, playlists read, occurrences read): every
    slice parsed and every playlist checked with musicmap.mpd's rules, each pid once."""
    quarantine, valid, seen_pid = [], [], {}
    read_pl = read_occ = 0
    for f in slice_files(mpd_dir):
        name = f.rsplit("/", 1)[-1]
        try:
            playlists = mpd.parse_slice(Path(f).read_bytes())
        except mpd.SliceError as e:
            quarantine.append((name, None, e.rule, f"{e.rule}: {e.detail}", 0))
            continue
        for p in playlists:
            read_pl += 1
            tracks = p.get("tracks") if isinstance(p, dict) else None
            n = len(tracks) if isinstance(tracks, list) else 0
            read_occ += n
            pid = p.get("pid") if isinstance(p, dict) else None
            pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
            bad = mpd.validate_playlist(p)
            if pid is None and not bad:
                bad = [mpd.Violation("wrong_type", "pid")]
            if bad:
                quarantine.append((name, pid, bad[0].rule, "; ".join(map(str, bad)), n))
            elif pid in seen_pid:
                quarantine.append((name, pid, "duplicate_pid", f"duplicate_pid: pid also in {seen_pid[pid]}", n))
            else:
                seen_pid[pid] = name
                valid.append((name, p))
    return valid, quarantine, read_pl, read_occ


def one_name_per_uri(valid: list, quarantine: list) -> list:
    """The playlists kept: the first valid playlist naming a URI sets its name, and a later one
    naming it otherwise is quarantined."""
    first_name: dict[str, str] = {}
    kept = []
    for name, p in valid:
        clash = None
        for t in p["tracks"]:
            if first_name.setdefault(t["track_uri"], t["track_name"]) != t["track_name"]:
                clash = t
        if clash is not None:
            quarantine.append((name, p["pid"], "track_name_conflict", "track_name_conflict", len(p["tracks"])))
        else:
            kept.append(p)
    return kept


def split_by_time(kept: list, g) -> dict:
    """{pid: train / val / test}: oldest first (modified_at, then pid)."""
    kept.sort(key=lambda p: (p["modified_at"], p["pid"]))
    n = len(kept)
    n_train = int(round(g.train_fraction * n))
    n_val = int(round((g.train_fraction + g.val_fraction) * n)) - n_train
    return {p["pid"]: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, p in enumerate(kept)}


def the_catalogue(kept: list, split: dict, held: dict, g) -> tuple[list, Counter, dict]:
    """(catalogue URIs by track_idx, train playlist counts, first metadata per URI): counted on
    train playlists only, first occurrence per playlist, held-out tracks never."""
    counts, meta = Counter(), {}
    for p in kept:
        for t in p["tracks"]:
            meta.setdefault(t["track_uri"], t)
        if split[p["pid"]] == "train":
            counts.update({t["track_uri"] for t in p["tracks"]} - held[p["pid"]])
    catalogue = sorted((u for u, c in counts.items() if c >= g.min_playlists), key=lambda u: (-counts[u], u))
    return catalogue, counts, meta


def build(mpd_dir: str, cfg) -> dict:
    """{table name: pyarrow table} and 'counts' (the reconciliation numbers)."""
    g = cfg.graph
    valid, quarantine, read_pl, read_occ = read(mpd_dir)
    kept = one_name_per_uri(valid, quarantine)
    split = split_by_time(kept, g)
    # graph playlists' held-out tracks (musicmap.cases): first occurrences, never counted below
    held = {p["pid"]: {t["track_uri"] for t in first_occurrences(p) if cases.held_out(
        p["pid"], t["pos"], g.eval_random_seed, g.holdout_playlists, g.holdout_tracks)}
        for p in kept if split[p["pid"]] == "train"}
    catalogue, counts, meta = the_catalogue(kept, split, held, g)
    track_idx = {u: i for i, u in enumerate(catalogue)}
    train = [p for p in kept if split[p["pid"]] == "train"]
    edges_of = {p["pid"]: [(track_idx[t["track_uri"]], t["pos"]) for t in first_occurrences(p)
                           if t["track_uri"] in track_idx and t["track_uri"] not in held[p["pid"]]] for p in train}
    # train playlists with too few catalogue tracks leave the graph
    graph_train = [p for p in train if len(edges_of[p["pid"]]) >= g.min_tracks]
    ordered = graph_train + [p for p in kept if split[p["pid"]] == "val"] + [p for p in kept if split[p["pid"]] == "test"]
    tables = {"playlists": playlists_table(ordered, split), "edges": edges_table(graph_train, edges_of, g),
              "tracks": tracks_table(catalogue, counts, meta),
              "eval": pa.concat_tables([eval_cases([p for p in kept if split[p["pid"]] != "train"], split, track_idx, g),
                                        graph_cases(graph_train, held, track_idx, g)]),
              "quarantine": pa.table({k: [r[i] for r in quarantine] for i, k in enumerate(schemas.QUARANTINE.names)},
                                     schema=schemas.QUARANTINE)}
    return {**tables, "counts": reconciliation(kept, split, held, edges_of, quarantine, read_pl, read_occ,
                                               tables["edges"].num_rows, g)}


def playlists_table(ordered: list, split: dict) -> pa.Table:
    cols = defaultdict(list)
    for i, p in enumerate(ordered):
        for k, v in (("playlist_idx", i), ("pid", p["pid"]), ("name", p["name"]),
                     ("modified_at", p["modified_at"]), ("num_followers", p["num_followers"]),
                     ("num_edits", p["num_edits"]), ("num_tracks", p["num_tracks"]), ("split", split[p["pid"]])):
            cols[k].append(v)
    return pa.table(dict(cols), schema=schemas.PLAYLISTS)


def edges_table(graph_train: list, edges_of: dict, g) -> pa.Table:
    ecols = defaultdict(list)
    for i, p in enumerate(graph_train):
        w_pl = (1 + g.followers_gain * math.log(p["num_followers"])) * (1 + g.edits_gain * math.log(p["num_edits"]))
        for t, pos in edges_of[p["pid"]]:
            ecols["playlist_idx"].append(i)
            ecols["track_idx"].append(t)
            ecols["pos"].append(pos)
            ecols["weight"].append(1.0 / (1.0 + g.position_decay * pos / 100.0) * w_pl)
    return pa.table(dict(ecols), schema=schemas.EDGES)


def tracks_table(catalogue: list, counts: Counter, meta: dict) -> pa.Table:
    return pa.table({
        "track_idx": list(range(len(catalogue))), "track_uri": catalogue,
        **{k: [meta[u][k] for u in catalogue] for k in ("track_name", "artist_uri", "artist_name",
                                                    "album_uri", "album_name", "duration_ms")},
        "train_playlists": [counts[u] for u in catalogue]}, schema=schemas.TRACKS)


def reconciliation(kept, split, held, edges_of, quarantine, read_pl, read_occ, n_edges, g) -> dict:
    """The reconciliation's terms, counted here the plain way."""
    train = [p for p in kept if split[p["pid"]] == "train"]
    train_total = sum(p["num_tracks"] for p in train)
    unique = sum(len({t["track_uri"] for t in p["tracks"]}) for p in train)
    n_held = sum(len(h) for h in held.values())
    in_catalogue = sum(len(edges_of[p["pid"]]) for p in train)
    gone = [p for p in train if len(edges_of[p["pid"]]) < g.min_tracks]
    q_playlists = [r for r in quarantine if r[2] not in mpd.FILE_RULES]
    return {"playlists_read": read_pl, "occurrences_read": read_occ,
            "valid": len(kept), "train_occurrences": train_total, "edges": n_edges,
            "unreadable_files": len(quarantine) - len(q_playlists),
            "quarantined_playlists": len(q_playlists),
            "quarantined_occurrences": sum(r[4] for r in q_playlists),
            "by_split": dict(Counter(split.values())),
            "occurrences_by_split": {s: sum(p["num_tracks"] for p in kept if split[p["pid"]] == s)
                                     for s in ("train", "val", "test")},
            "repeats_within_playlist": train_total - unique,
            "held_out_for_evaluation": n_held,
            "removed_track_filter": unique - n_held - in_catalogue,
            "removed_playlists_min_tracks": len(gone),
            "removed_with_playlist_min_tracks": sum(len(edges_of[p["pid"]]) for p in gone)}


def eval_cases(playlists, split, track_idx, g) -> pa.Table:
    """The challenge category (drawn from graph.eval_random_seed and pid among those the playlist is long
    enough for) and the seed protocol case of each val/test playlist."""
    rows = defaultdict(list)

    def emit(p, category, name, seed_pos):
        uris = [t["track_uri"] for t in p["tracks"]]
        seed_uris = [uris[i] for i in seed_pos]
        seed_idx = cases.seed_ids(seed_uris, track_idx)
        held = cases.holdout_positions(uris, seed_pos)
        hold, hold_art = [uris[j] for j in held], [p["tracks"][j]["artist_uri"] for j in held]
        for k, v in (("pid", p["pid"]), ("split", split[p["pid"]]), ("category", category),
                     ("name", name), ("num_tracks", len(uris)), ("seed_idx", seed_idx),
                     ("seed_uris", seed_uris), ("holdout_uris", hold), ("holdout_artist_uris", hold_art)):
            rows[k].append(v)

    for p in playlists:
        n = len(p["tracks"])
        drawn = cases.challenge_case(p["pid"], n, g.eval_random_seed)
        if drawn:
            c, pos = drawn
            emit(p, c.name, p["name"] if c.title else None, pos)
        if g.seed_protocol:
            emit(p, mpd.SEED_PROTOCOL, p["name"], list(range(n // 2)))
    return pa.table(dict(rows), schema=schemas.EVAL)


def graph_cases(graph_train, held, track_idx, g) -> pa.Table:
    """The case of each graph playlist with held-out tracks: the rest of its tracks as seeds."""
    rows = defaultdict(list)
    for p in graph_train:
        if not held[p["pid"]]:
            continue
        firsts = list(first_occurrences(p))
        kept = [t for t in firsts if t["track_uri"] not in held[p["pid"]]]
        out = [t for t in firsts if t["track_uri"] in held[p["pid"]]]
        for k, v in (("pid", p["pid"]), ("split", cases.split_of(p["pid"], g.eval_random_seed)),
                     ("category", cases.CATEGORY), ("name", p["name"]), ("num_tracks", p["num_tracks"]),
                     ("seed_idx", [track_idx[t["track_uri"]] for t in kept if t["track_uri"] in track_idx]),
                     ("seed_uris", [t["track_uri"] for t in kept]),
                     ("holdout_uris", [t["track_uri"] for t in out]),
                     ("holdout_artist_uris", [t["artist_uri"] for t in out])):
            rows[k].append(v)
    return pa.table(dict(rows), schema=schemas.EVAL)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mpd")
    ap.add_argument("out")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)
    t0 = time.time()
    res = build(args.mpd, load_config(overrides=args.overrides))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in res.items():
        if name != "counts":
            pq.write_table(table, out / f"{name}.parquet", compression="zstd")
    print(f"reference build: {res['counts']} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
