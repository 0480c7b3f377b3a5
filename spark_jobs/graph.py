"""The build_graph job: MPD slices -> filtered, time-split Parquet graph (see schemas.py).

Steps, each counted in stats.json so that every playlist and occurrence read is accounted for:
 1. read every slice (one task per file), check each playlist against the MPD rules; unreadable
    files and rule-breaking playlists go to quarantine; a pid seen again (in a later file, or
    later in the same file) is quarantined as duplicate_pid, the first one is kept; a playlist
    naming a track URI otherwise than the first playlist (in file order) that holds it is
    quarantined as track_name_conflict (one name per URI, as the MPD's checker demands);
 2. split the valid playlists by time: sorted by (modified_at, pid), the oldest train_fraction
    train, the next val_fraction validate, the newest rest test;
 3. vocabulary from train playlists only: a track is kept when it is in >= min_playlists train
    playlists (a track repeated inside a playlist counts once; its first position is kept);
 4. train playlists left with < min_tracks vocabulary tracks leave the graph;
 5. dense ids: track_idx by (train playlist count desc, track_uri); playlist_idx for the graph's
    train playlists by (modified_at, pid), then val, then test playlists in the same order;
 6. edges with weight = 1 / (1 + position_decay * pos / 100) * (1 + followers_gain * ln(followers))
    * (1 + edits_gain * ln(edits));
 7. evaluation cases for val/test playlists: one of the ten challenge categories (chosen
    deterministically from eval_seed and pid among those the playlist is long enough for) and the
    seed system's protocol (first half as seeds); seeds as in-vocabulary track_idx, holdouts as
    URIs (out-of-vocabulary ones kept: they count as misses).
"""
from __future__ import annotations

import math
import time

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from musicmap import mpd, schemas, storage
from musicmap.errors import InputError
from musicmap.log import get_logger
from musicmap.spark_jobs.datasources import MPDSource, ParquetSink, storage_options

log = get_logger("build_graph")


def split_cutoffs(modified_at: np.ndarray, pid: np.ndarray, train_fraction: float,
                  val_fraction: float) -> tuple[tuple[int, int] | None, tuple[int, int] | None, int, int]:
    """The last (modified_at, pid) of train and of val in time order, and the split sizes."""
    n = len(pid)
    n_train = int(round(train_fraction * n))
    n_val = int(round((train_fraction + val_fraction) * n)) - n_train
    order = np.lexsort((pid, modified_at))

    def key(i):
        return None if i < 0 else (int(modified_at[order[i]]), int(pid[order[i]]))
    return key(n_train - 1), key(n_train + n_val - 1), n_train, n_val


def _le(cut: tuple[int, int] | None):
    """(modified_at, pid) <= cut as a Spark column."""
    if cut is None:
        return F.lit(False)
    m, p = cut
    return (F.col("modified_at") < m) | ((F.col("modified_at") == m) & (F.col("pid") <= p))


def write_table(df: DataFrame, uri: str, schema_name: str, parts: int | None = None,
                max_rows_per_file: int = 0) -> None:
    """Write df as schemas.<schema_name>: in `parts` files (None: a file per task, split into
    files of at most max_rows_per_file rows, no shuffle)."""
    if parts is not None:
        df = df.repartition(parts) if parts > 1 else df.coalesce(1)
    (df.write.format("musicmap_parquet").options(**storage_options())
     .option("path", uri).option("schema", schema_name)
     .option("max_rows_per_file", str(max_rows_per_file)).mode("overwrite").save())


def build(spark: SparkSession, cfg, input_uri: str, output_uri: str) -> dict:
    """Run the job; returns stats (also written to graph/stats.json). Committed atomically."""
    from musicmap.inputs import list_inputs
    t0 = time.time()
    g = cfg.graph
    spark.dataSource.register(MPDSource)
    spark.dataSource.register(ParquetSink)
    out = storage.StageWriter(output_uri)
    inputs = list_inputs(input_uri)
    if not input_uri.rstrip("/").endswith((".json", ".json.gz")):
        input_uri = inputs.folder  # the folder itself, or the data/ folder of an unzipped MPD
    files = len(inputs.slices)
    log.info("reading %d MPD slices from %s (%d other entries ignored); writing %s", files, input_uri,
             len(inputs.ignored), out.prefix)

    # the parsed slices cached on disk, not in memory: the full MPD's in the heap of a local driver
    # ran out of it (OutOfMemoryError at 1,000 slices with 4g; bench/BENCHMARKS.md); their
    # playlist columns (no tracks, ~200 bytes a playlist) in memory, for every step that needs no
    # track: a scan of the parsed slices costs nearly as much for one column as for all of them
    read = (spark.read.format("musicmap_mpd").options(**storage_options()).option("path", input_uri)
            .load().persist(StorageLevel.DISK_ONLY))
    read_pl = read.drop("tracks").persist()
    read_pl.count()  # one task per slice: each file read once, filling both caches
    # later jobs scan the caches in a few large tasks: a task per slice per job would cost more
    # in scheduling than in work (1,000 slices x dozens of jobs on the full MPD)
    tasks = max(1, min(files, 2 * spark.sparkContext.defaultParallelism))
    raw, raw_pl = read.coalesce(tasks), read_pl.coalesce(tasks)

    # ---- 1. quarantine: unreadable files, rule-breaking playlists, duplicate pids
    ok = raw_pl.where(F.col("reason").isNull())
    firsts = F.broadcast(ok.groupBy("pid").agg(
        F.count("*").alias("n"), F.min(F.struct("file_index", "ordinal", "file")).alias("first"))
        .where("n > 1").select("pid", "first"))
    is_dup = F.col("first").isNotNull() & ((F.col("first.file_index") != F.col("file_index"))
                                           | (F.col("first.ordinal") != F.col("ordinal")))
    dups = (ok.join(firsts, "pid", "left").where(is_dup).select(
        "file", "pid", F.lit("duplicate_pid").alias("rule"),
        F.concat(F.lit("duplicate_pid: pid also in "), F.col("first.file")).alias("reason"), "num_tracks"))
    bad = raw_pl.where(F.col("reason").isNotNull()).select(
        "file", "pid", F.split("reason", ":").getItem(0).alias("rule"), "reason", "num_tracks")
    # the valid playlists, with their tracks (good) and without (good_pl), filtered alike
    good, good_pl = (df.where(F.col("reason").isNull()).join(firsts, "pid", "left").where(~is_dup)
                     .drop("first") for df in (raw, raw_pl))

    # ---- 2. split by time, then one pass over every occurrence: per track URI where it first
    # occurs, whether it was given two names, and its train playlist count (step 3)
    good, good_pl, keys, track_agg = _split_and_count(good, good_pl, g, input_uri, files)
    # one name per track URI: the first playlist (in file order) naming a URI sets its name;
    # later playlists naming it otherwise are quarantined (track_name_conflict). Rare: the split
    # and the counts are then redone without them.
    conflicts = [r.track_uri for r in track_agg.where("name_h_min != name_h_max").select("track_uri").collect()]
    conflicted = None
    if conflicts:
        conflicted = _name_conflicts(good, track_agg, conflicts).persist()
        good, good_pl = (df.drop("split").join(conflicted.select("pid", "file_index", "ordinal"),
                                               ["pid", "file_index", "ordinal"], "left_anti")
                         for df in (good, good_pl))
        track_agg.unpersist()
        good, good_pl, keys, track_agg = _split_and_count(good, good_pl, g, input_uri, files)
    quarantine = bad.unionByName(dups)
    if conflicted is not None:
        quarantine = quarantine.unionByName(conflicted.select(*quarantine.columns))
    quarantine = quarantine.persist()
    q_rows = quarantine.groupBy("rule", F.col("rule").isin(*mpd.FILE_RULES).alias("file_level")).agg(
        F.count("*").alias("n"), F.sum("num_tracks").alias("occ")).collect()
    n_quarantined = sum(r.n for r in q_rows)
    if g.strict and n_quarantined:
        sample = quarantine.limit(5).collect()
        raise InputError(f"{n_quarantined} bad inputs with graph.strict=true, e.g. "
                         + "; ".join(f"{r.file} pid {r.pid}: {r.reason}" for r in sample))
    playlists = good_pl.select("pid", "name", "name_norm", "has_description", "modified_at",
                            "num_followers", "num_edits", "num_tracks", "split").persist()

    # ---- 3. vocabulary from train playlists (first occurrence of a track per playlist)
    train_occ = (_occurrences(good.where("split = 'train'"), "pid").where("first")
                 .select("pid", "pos", "track_uri"))
    # every track's metadata (its first occurrence's), for the vocabulary and the statistics
    tracks = _first_metadata(good, track_agg.select("first_order", "train_playlists")).persist(
        StorageLevel.DISK_ONLY)
    vocab = tracks.where(F.col("train_playlists") >= g.min_playlists)
    vocab = (vocab.withColumn("track_idx", (F.row_number().over(
        Window.orderBy(F.desc("train_playlists"), F.asc("track_uri"))) - 1).cast("int"))
        .select(*[F.col(c).cast("int") if c == "train_playlists" else c for c in schemas.TRACKS.names])
        .persist())
    n_tracks = vocab.count()
    if n_tracks == 0:
        raise InputError(f"{input_uri}: no track is in >= {g.min_playlists} train playlists; "
                         f"lower graph.min_playlists or use more data")

    # ---- 4. train playlists with too few vocabulary tracks leave the graph
    idx_map = vocab.select("track_uri", "track_idx")
    train_edges = train_occ.join(F.broadcast(idx_map), "track_uri").drop("track_uri").persist()
    per_pl = train_edges.groupBy("pid").agg(F.count("*").alias("kept")).persist()
    graph_pids = per_pl.where(F.col("kept") >= g.min_tracks).select("pid")

    # ---- 5. dense playlist ids: graph train playlists, then val, then test (time order)
    pl = (playlists.join(graph_pids.withColumn("in_graph", F.lit(True)), "pid", "left")
          .where("split != 'train' OR in_graph"))
    order = F.when(F.col("split") == "train", 0).when(F.col("split") == "val", 1).otherwise(2)
    pl = pl.withColumn("playlist_idx", (F.row_number().over(
        Window.orderBy(order, "modified_at", "pid")) - 1).cast("int")).persist()
    n_graph_playlists = pl.where("split = 'train'").count()

    # ---- 6. edges with weights
    weight = (1.0 / (1.0 + g.position_decay * F.col("pos") / 100.0)
              * (1.0 + g.followers_gain * F.log(F.col("num_followers").cast("double")))
              * (1.0 + g.edits_gain * F.log(F.col("num_edits").cast("double"))))
    edges = (train_edges.join(F.broadcast(pl.where("split = 'train'").select(
        "pid", "playlist_idx", "num_followers", "num_edits")), "pid")
             .select("playlist_idx", "track_idx", F.col("pos").cast("short").alias("pos"),
                     weight.cast("float").alias("weight")).persist())
    n_edges = edges.count()

    # ---- 7. evaluation cases
    vocab_bc = spark.sparkContext.broadcast(dict(
        (r.track_uri, r.track_idx) for r in idx_map.toLocalIterator()))
    eval_in = good.where("split != 'train'").select(
        "pid", "split", "name", F.col("tracks.track_uri").alias("uris"),
        F.col("tracks.artist_uri").alias("artists"))
    eval_fn = _eval_cases_fn(vocab_bc, g.eval_seed, g.seed_protocol)
    cases = eval_in.mapInArrow(eval_fn, schemas.spark_schema(schemas.EVAL)).persist()

    # ---- write (tables under the staging version; visible only after commit)
    write_table(edges, out.path("edges"), "EDGES", max_rows_per_file=g.rows_per_part)
    write_table(vocab, out.path("tracks"), "TRACKS", max(1, math.ceil(n_tracks / 2_000_000)))
    write_table(pl.select(*schemas.PLAYLISTS.names), out.path("playlists"), "PLAYLISTS",
                max(1, math.ceil(keys.num_rows / 2_000_000)))
    write_table(cases, out.path("eval"), "EVAL", max(1, math.ceil(keys.num_rows / 1_000_000)))
    write_table(quarantine, out.path("quarantine"), "QUARANTINE", 1)

    stats = _stats(raw_pl, playlists, track_agg, tracks, per_pl, edges, cases, q_rows, inputs,
                   n_tracks, n_graph_playlists, n_edges, g)
    stats["input"] = input_uri
    stats["seconds"] = round(time.time() - t0, 1)
    storage.write_json(out.path("stats.json"), stats)
    out.commit({"stage": "graph", "input": input_uri, "tracks": n_tracks,
                "graph_playlists": n_graph_playlists, "edges": n_edges,
                "config": {"graph": cfg.graph.to_dict()}})
    for df in (read, read_pl, quarantine, playlists, track_agg, tracks, vocab, train_edges, per_pl, pl,
               edges, cases, *([conflicted] if conflicted is not None else [])):
        df.unpersist()
    vocab_bc.destroy()
    log.info("graph committed at %s (%s) in %.1fs", output_uri, out.version, stats["seconds"])
    return stats


def _split_and_count(good: DataFrame, good_pl: DataFrame, g, input_uri: str, files: int):
    """(good and good_pl with a split column, the (modified_at, pid) keys, the per-track aggregate)."""
    keys = good_pl.select("modified_at", "pid").toArrow()
    if keys.num_rows == 0:
        raise InputError(f"{input_uri}: no valid playlist in {files} file(s); see the quarantine "
                         f"(run `musicmap check {input_uri}`)")
    cut_train, cut_val, _, _ = split_cutoffs(
        keys["modified_at"].to_numpy(), keys["pid"].to_numpy(), g.train_fraction, g.val_fraction)
    split = F.when(_le(cut_train), "train").when(_le(cut_val), "val").otherwise("test")
    good, good_pl = good.withColumn("split", split), good_pl.withColumn("split", split)
    return good, good_pl, keys, _track_aggregate(good)


def _occurrences(good: DataFrame, *cols: str) -> DataFrame:
    """One row per track occurrence of `good` (cols of its playlist, the TRACK_STRUCT fields) and
    `order`: its place in file order as one long, unique per occurrence (pos < 256)."""
    return good.select("file_index", "ordinal", *cols, F.inline("tracks")).withColumn(
        "order", F.col("file_index").cast("long") * (1 << 32) + F.col("ordinal").cast("long") * 256
        + F.col("pos").cast("long"))


def _track_aggregate(good: DataFrame) -> DataFrame:
    """One row per distinct track URI of the valid playlists: where it first occurs in file order
    (first_order, see _occurrences), the least and greatest hash of the names it was given (equal
    unless it has two names), and the number of train playlists holding it (train_playlists).
    Only fixed-width values: Spark aggregates them in a hash map (metadata strings here would make
    it sort all occurrences); the metadata is fetched by first_order (_first_metadata)."""
    name_h = F.xxhash64("track_name")
    return _occurrences(good, "split").groupBy("track_uri").agg(
        F.min("order").alias("first_order"),
        F.min(name_h).alias("name_h_min"), F.max(name_h).alias("name_h_max"),
        F.sum(((F.col("split") == "train") & F.col("first")).cast("int")).cast("long").alias("train_playlists"),
    ).persist()


def _first_metadata(good: DataFrame, wanted: DataFrame) -> DataFrame:
    """The occurrence at each first_order of `wanted` (its other columns kept) with its track
    metadata: one pass over the occurrences, joined on one long with `wanted` broadcast."""
    return (_occurrences(good).join(F.broadcast(wanted), F.col("order") == F.col("first_order"))
            .drop("file_index", "ordinal", "pos", "first", "order", "first_order"))


def _name_conflicts(good: DataFrame, track_agg: DataFrame, uris: list[str]) -> DataFrame:
    """Playlists naming one of `uris` otherwise than its first occurrence did (QUARANTINE columns
    plus file_index and ordinal)."""
    first = F.broadcast(_first_metadata(good, track_agg.where(F.col("track_uri").isin(uris))
                                        .select("first_order"))
                        .select("track_uri", F.col("track_name").alias("first_name")))
    occ = _occurrences(good, "file", "pid", "num_tracks")
    return (occ.join(first, "track_uri").where(F.col("track_name") != F.col("first_name"))
            .groupBy("file", "file_index", "ordinal", "pid", "num_tracks")
            .agg(F.first(F.concat(F.lit("track_name_conflict: "), F.col("track_uri"), F.lit(" is '"),
                                  F.col("first_name"), F.lit("' elsewhere and '"), F.col("track_name"),
                                  F.lit("' here"))).alias("reason"))
            .withColumn("rule", F.lit("track_name_conflict")))


def _eval_cases_fn(vocab_bc, eval_seed: int, seed_protocol: bool):
    """mapInArrow function: val/test playlists -> EVAL rows (see module doc, step 7)."""
    categories = mpd.CHALLENGE_CATEGORIES

    def fn(batches):
        import pyarrow as pa
        vocab = vocab_bc.value
        for batch in batches:
            rows = {f: [] for f in schemas.EVAL.names}

            def emit(pid, split, category, name, n, seed_pos, uris, artists):
                seed_set = {uris[i] for i in seed_pos}
                seed_uris = [uris[i] for i in seed_pos]
                seen_idx, seed_idx = set(), []
                for u in seed_uris:
                    i = vocab.get(u)
                    if i is not None and i not in seen_idx:
                        seen_idx.add(i)
                        seed_idx.append(i)
                hold, hold_art, seen = [], [], set(seed_set)
                for u, a in zip(uris, artists):
                    if u not in seen:
                        seen.add(u)
                        hold.append(u)
                        hold_art.append(a)
                for f, v in (("pid", pid), ("split", split), ("category", category), ("name", name),
                             ("num_tracks", n), ("seed_idx", seed_idx), ("seed_uris", seed_uris),
                             ("holdout_uris", hold), ("holdout_artist_uris", hold_art)):
                    rows[f].append(v)

            for r in batch.to_pylist():
                uris, artists = r["uris"], r["artists"]
                n = len(uris)
                eligible = [c for c in categories if n >= c.min_tracks]
                if eligible:
                    rng = np.random.default_rng([eval_seed, r["pid"]])
                    c = eligible[int(rng.integers(len(eligible)))]
                    pos = (sorted(rng.choice(n, c.seeds, replace=False).tolist()) if c.random
                           else list(range(c.seeds)))
                    emit(r["pid"], r["split"], c.name, r["name"] if c.title else None, n, pos, uris, artists)
                if seed_protocol:
                    emit(r["pid"], r["split"], mpd.SEED_PROTOCOL, r["name"], n, list(range(n // 2)),
                         uris, artists)
            yield pa.RecordBatch.from_pydict(rows, schema=schemas.EVAL)
    return fn


def _degree(df: DataFrame, key: str, n_nodes: int) -> dict:
    """Degree mean/std/min/max over all n_nodes nodes of one side (nodes with no edge count 0)."""
    d = df.groupBy(key).agg(F.count("*").alias("d")).agg(
        F.count("*").alias("nz"), F.sum("d").alias("s"), F.sum(F.col("d") * F.col("d")).alias("s2"),
        F.min("d").alias("mn"), F.max("d").alias("mx")).first()
    s, s2, nz = d.s or 0, d.s2 or 0, d.nz
    mean = s / n_nodes if n_nodes else 0.0
    var = max(0.0, s2 / n_nodes - mean * mean) if n_nodes else 0.0
    return {"mean": round(mean, 4), "std": round(math.sqrt(var), 4),
            "min": 0 if nz < n_nodes else (d.mn or 0), "max": d.mx or 0}


def _stats(raw, playlists, track_agg, tracks, per_pl, edges, cases, q_rows, inputs, n_tracks,
           n_graph_playlists, n_edges, g) -> dict:
    """graph/stats.json: graph statistics, the reconciliation, and the input's official numbers."""
    # a row is a playlist unless it is a file that could not be read (its pid may be null)
    playlist_rows = raw.where(F.col("reason").isNull()
                              | ~F.split("reason", ":").getItem(0).isin(*mpd.FILE_RULES))
    read = playlist_rows.agg(F.count("*").alias("playlists"), F.sum("num_tracks").alias("occ")).first()
    by_split = {r.split: (r.n, r.occ) for r in playlists.groupBy("split").agg(
        F.count("*").alias("n"), F.sum("num_tracks").alias("occ")).collect()}
    tr = track_agg.agg(
        F.sum("train_playlists").alias("unique_occ"),
        F.sum(F.when(F.col("train_playlists") >= g.min_playlists, F.col("train_playlists"))).alias("vocab_occ"),
        F.sum(F.when(F.col("train_playlists") > 0, 1)).alias("train_tracks"),
        F.count("*").alias("tracks")).first()
    meta = tracks.agg(F.count("*").alias("tracks"), F.countDistinct("album_uri").alias("albums"),
                      F.countDistinct("artist_uri").alias("artists")).first()
    if meta.tracks != tr.tracks:
        raise AssertionError(f"metadata found for {meta.tracks} of {tr.tracks} tracks")
    kept = per_pl.agg(F.sum(F.when(F.col("kept") >= g.min_tracks, F.col("kept"))).alias("kept_occ"),
                      F.sum(F.when(F.col("kept") < g.min_tracks, F.col("kept"))).alias("removed_occ"),
                      F.sum(F.when(F.col("kept") < g.min_tracks, 1)).alias("removed_pl"),
                      F.count("*").alias("with_vocab")).first()
    n_train, occ_train = by_split.get("train", (0, 0))
    in_vocab_occ = int(tr.vocab_occ or 0)
    removed_pl = kept.removed_pl or 0
    no_vocab_pl = n_train - kept.with_vocab  # train playlists with no vocabulary track at all
    quarantine = {}
    file_level = {"files": 0}
    for r in q_rows:
        if r.file_level:
            file_level["files"] += r.n
            file_level[r.rule] = file_level.get(r.rule, 0) + r.n
        else:
            q = quarantine.setdefault(r.rule, {"playlists": 0, "occurrences": 0})
            q["playlists"] += r.n
            q["occurrences"] += int(r.occ or 0)
    q_pl = sum(q["playlists"] for q in quarantine.values())
    q_occ = sum(q["occurrences"] for q in quarantine.values())
    titles = playlists.agg(F.countDistinct("name").alias("t"), F.countDistinct("name_norm").alias("tn"),
                           F.sum(F.col("has_description").cast("int")).alias("d")).first()
    case_counts = {f"{r.split}/{r.category}": r.n for r in
                   cases.groupBy("split", "category").agg(F.count("*").alias("n")).collect()}
    n_valid = sum(v[0] for v in by_split.values())
    occ_valid = sum(int(v[1] or 0) for v in by_split.values())
    n_val_pl = by_split.get("val", (0, 0))[0] + by_split.get("test", (0, 0))[0]
    unique_occ = int(tr.unique_occ or 0)
    stats = {
        "reconciliation": {
            "files": {"read": len(inputs.slices), "unreadable": file_level, "folder": inputs.folder,
                      "ignored": len(inputs.ignored), "ignored_names": inputs.ignored[:50]},
            "playlists": {
                "read": read.playlists,
                "quarantined": q_pl, "quarantined_by_rule": {k: v["playlists"] for k, v in quarantine.items()},
                "valid": n_valid,
                "by_split": {k: v[0] for k, v in by_split.items()},
                "train_in_graph": n_graph_playlists,
                "train_removed_min_tracks": removed_pl + no_vocab_pl,
            },
            "occurrences": {
                "read": int(read.occ or 0),
                "quarantined": q_occ,
                "valid": occ_valid,
                "by_split": {k: int(v[1] or 0) for k, v in by_split.items()},
                "train": {
                    "total": int(occ_train or 0),
                    "repeats_within_playlist": int(occ_train or 0) - unique_occ,
                    "removed_track_filter": unique_occ - in_vocab_occ,
                    "removed_with_playlist_min_tracks": int(kept.removed_occ or 0),
                    "edges": n_edges,
                },
            },
            "checks": {},
        },
        "graph": {
            "playlists": n_graph_playlists, "tracks": n_tracks, "interactions": n_edges,
            "directed_entries": 2 * n_edges,
            "nodes": n_graph_playlists + n_tracks,
            "sparsity": n_edges / max(1, n_graph_playlists * n_tracks),
            "playlist_degree": _degree(edges, "playlist_idx", n_graph_playlists),
            "track_degree": _degree(edges, "track_idx", n_tracks),
            "eval_playlists": n_val_pl,
            "eval_cases": case_counts,
        },
        "input_official": {
            "playlists": n_valid, "tracks": occ_valid, "unique_tracks": tr.tracks,
            "unique_albums": meta.albums, "unique_artists": meta.artists,
            "unique_titles": titles.t, "unique_normalized_titles": titles.tn,
            "playlists_with_descriptions": int(titles.d or 0),
            "avg_playlist_length": round(occ_valid / n_valid, 6) if n_valid else 0.0,
        },
    }
    distinct_train = int(tr.train_tracks or 0)
    stats["filters"] = {"min_playlists": g.min_playlists, "min_tracks": g.min_tracks,
                        "train_tracks_seen": distinct_train,
                        "tracks_removed_min_playlists": distinct_train - n_tracks,
                        "train_playlists_removed_min_tracks": removed_pl + no_vocab_pl}
    rec = stats["reconciliation"]
    p, o, t = rec["playlists"], rec["occurrences"], rec["occurrences"]["train"]
    rec["checks"] = {
        "playlists: read = valid + quarantined": p["read"] == p["valid"] + p["quarantined"],
        "playlists: valid = train + val + test": p["valid"] == sum(p["by_split"].values()),
        "playlists: train = in graph + removed": p["by_split"].get("train", 0)
        == p["train_in_graph"] + p["train_removed_min_tracks"],
        "occurrences: read = valid + quarantined": o["read"] == o["valid"] + o["quarantined"],
        "occurrences: valid = train + val + test": o["valid"] == sum(o["by_split"].values()),
        "occurrences: train = edges + repeats + track filter + removed playlists":
            t["total"] == t["edges"] + t["repeats_within_playlist"] + t["removed_track_filter"]
            + t["removed_with_playlist_min_tracks"],
    }
    if not all(rec["checks"].values()):
        raise AssertionError(f"reconciliation failed: {rec}")
    return stats
