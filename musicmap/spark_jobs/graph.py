"""The build_graph job: MPD slices -> filtered, time-split Parquet graph (see schemas.py).

Steps, each counted in stats.json so that every playlist and occurrence read is accounted for:
 1. read every slice (one task per file), check each playlist against the MPD rules; unreadable
    files and rule-breaking playlists go to quarantine; a pid seen again (in a later file, or
    later in the same file) is quarantined as duplicate_pid, the first one is kept; a playlist
    naming a track URI otherwise than the first playlist (in file order) that holds it is
    quarantined as track_name_conflict (one name per URI, as the MPD's checker demands);
 2. split the valid playlists by time: sorted by (modified_at, pid), the oldest train_fraction
    train, the next val_fraction validate, the newest rest test;
 3. catalogue from train playlists only: a track is kept when it is in >= min_playlists train
    playlists (a track repeated inside a playlist counts once; its first position is kept);
 4. train playlists left with < min_tracks catalogue tracks leave the graph;
 5. dense ids: track_idx by (train playlist count desc, track_uri); playlist_idx for the graph's
    train playlists by (modified_at, pid), then val, then test playlists in the same order;
 6. edges with weight = 1 / (1 + position_decay * pos / 100) * (1 + followers_gain * ln(followers))
    * (1 + edits_gain * ln(edits));
 7. evaluation cases for val/test playlists: one of the ten challenge categories (chosen
    deterministically from graph.eval_random_seed and pid among those the playlist is long enough for) and the
    seed system's protocol (first half as seeds); seeds as in-catalogue track_idx, holdouts as
    URIs (out-of-catalogue ones kept: they count as misses); and for a share of the graph's
    train playlists (musicmap.cases) a share of their tracks held out before steps 3-6, so they
    never reach the edges or the counts, as their case (split graph_val / graph_test).

build() runs the steps in order (_read, _quarantine, _split, _catalogue, _graph_playlists, _edges,
_eval_cases), then _write and _stats. They pass their DataFrames along in one Job, and every
frame they cache goes through its Cache, released in one finally.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from musicmap import cases, mpd, schemas, storage
from musicmap.errors import InputError
from musicmap.inputs import list_inputs
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
    """Write df as schemas.<schema_name> in `parts` files. With parts=None each task writes its
    own files of at most max_rows_per_file rows, with no shuffle."""
    if parts is not None:
        df = df.repartition(parts) if parts > 1 else df.coalesce(1)
    (df.write.format("musicmap_parquet").options(**storage_options())
     .option("path", uri).option("schema", schema_name)
     .option("max_rows_per_file", str(max_rows_per_file)).mode("overwrite").save())


class Cache:
    """Every DataFrame and broadcast the job keeps, released in one place that always runs
    (build's finally), so a failing step leaks nothing into the session."""

    def __init__(self):
        self.frames, self.broadcasts = [], []

    def keep(self, df: DataFrame, level: StorageLevel | None = None) -> DataFrame:
        df = df.persist() if level is None else df.persist(level)
        self.frames.append(df)
        return df

    def drop(self, df: DataFrame) -> None:
        """Release one early (a frame the job has replaced)."""
        df.unpersist()
        self.frames = [f for f in self.frames if f is not df]

    def broadcast(self, spark: SparkSession, value):
        b = spark.sparkContext.broadcast(value)
        self.broadcasts.append(b)
        return b

    def release(self) -> None:
        for df in self.frames:
            df.unpersist()
        for b in self.broadcasts:
            b.destroy()
        self.frames, self.broadcasts = [], []


@dataclass
class Frames:
    """What each step leaves for the next ones (DataFrames)."""
    raw: DataFrame | None = None               # every playlist read (or unreadable file), with tracks
    raw_playlists: DataFrame | None = None     # the same without their tracks
    valid: DataFrame | None = None             # the valid playlists, with tracks (and a split, from step 2)
    valid_playlists: DataFrame | None = None   # the same without their tracks
    quarantine: DataFrame | None = None        # rejected input: file, pid, rule, reason, num_tracks
    playlists: DataFrame | None = None         # the valid playlists' columns, with their split
    track_counts: DataFrame | None = None      # per track URI: first occurrence, names, train playlists
    tracks: DataFrame | None = None            # every track's metadata (its first occurrence's)
    catalogue: DataFrame | None = None         # the catalogue's tracks with track_idx (TRACKS)
    train_edges: DataFrame | None = None       # train occurrences of catalogue tracks: pid, pos, track_idx
    kept_per_playlist: DataFrame | None = None  # per train pid: how many catalogue tracks it keeps
    numbered: DataFrame | None = None          # the graph's playlists and val/test with playlist_idx
    edges: DataFrame | None = None             # the graph's edges (EDGES)
    cases: DataFrame | None = None             # the evaluation cases (EVAL)


@dataclass
class Counts:
    """What the steps counted, for the later steps and the stats."""
    valid: int = 0                             # valid playlists
    quarantine_rows: list = field(default_factory=list)   # (rule, file_level, n, occ) per rule
    tracks: int = 0                            # catalogue tracks
    graph_playlists: int = 0                   # train playlists in the graph
    edges: int = 0


@dataclass
class Job:
    """The job's input and settings, and what its steps leave for the next ones and the stats."""
    spark: SparkSession
    graph_cfg: object                          # cfg.graph
    input_uri: str
    inputs: object                             # musicmap.inputs.Inputs
    cache: Cache
    frames: Frames = field(default_factory=Frames)
    counts: Counts = field(default_factory=Counts)


def build(spark: SparkSession, cfg, input_uri: str, output_uri: str) -> dict:
    """Run the job; returns stats (also written to graph/stats.json). Committed atomically."""
    t0 = time.time()
    spark.dataSource.register(MPDSource)
    spark.dataSource.register(ParquetSink)
    out = storage.StageWriter(output_uri)
    inputs = list_inputs(input_uri)
    if not input_uri.rstrip("/").endswith((".json", ".json.gz")):
        input_uri = inputs.folder  # the folder itself, or the data/ folder of an unzipped MPD
    log.info("reading %d MPD slices from %s (%d other entries ignored); writing %s", len(inputs.slices),
             input_uri, len(inputs.ignored), out.prefix)
    job = Job(spark, cfg.graph, input_uri, inputs, Cache())
    try:
        for step in (_read, _quarantine, _split, _catalogue, _graph_playlists, _edges, _eval_cases):
            step(job)
        _write(job, out)
        stats = _stats(job)
        stats["input"], stats["seconds"] = input_uri, round(time.time() - t0, 1)
        storage.write_json(out.path("stats.json"), stats)
        out.commit({"stage": "graph", "input": input_uri, "tracks": job.counts.tracks,
                    "graph_playlists": job.counts.graph_playlists, "edges": job.counts.edges,
                    "config": {"graph": cfg.graph.to_dict()}})
    finally:
        job.cache.release()
    log.info("graph committed at %s (%s) in %.1fs", output_uri, out.version, stats["seconds"])
    return stats


def _read(job: Job) -> None:
    """Parse every slice once (one task per file) into two caches."""
    # The parsed slices are cached on disk, not in memory: the full MPD's in the heap of a local
    # driver ran out of it (OutOfMemoryError at 1,000 slices with 4g; bench/BENCHMARKS.md).
    # Their playlist columns (no tracks, ~200 bytes a playlist) stay in memory, for every step
    # that needs no track: a scan costs nearly as much for one column as for all of them.
    cache = job.cache
    read = cache.keep(job.spark.read.format("musicmap_mpd").options(**storage_options())
                  .option("path", job.input_uri).load(), StorageLevel.DISK_ONLY)
    read_pl = cache.keep(read.drop("tracks"))
    read_pl.count()  # each file read once, filling both caches
    # Later jobs scan the caches in a few large tasks. A task per slice per job would cost more
    # in scheduling than in work (1,000 slices x dozens of jobs on the full MPD).
    files = len(job.inputs.slices)
    tasks = max(1, min(files, 2 * job.spark.sparkContext.defaultParallelism))
    job.frames.raw, job.frames.raw_playlists = read.coalesce(tasks), read_pl.coalesce(tasks)


def _quarantine(job: Job) -> None:
    """Step 1: unreadable files, rule-breaking playlists and duplicate pids are set apart."""
    raw, raw_pl = job.frames.raw, job.frames.raw_playlists
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
    # the valid playlists, with their tracks (valid) and without (valid_playlists), filtered alike
    valid, valid_playlists = (df.where(F.col("reason").isNull()).join(firsts, "pid", "left").where(~is_dup)
                     .drop("first") for df in (raw, raw_pl))
    job.frames.valid, job.frames.valid_playlists = valid, valid_playlists
    job.frames.quarantine = bad.unionByName(dups)


def _split(job: Job) -> None:
    """Step 2: split by time, then count per track URI where it first occurs, whether it was
    given two names, and its train playlists (for step 3)."""
    frames, graph_cfg = job.frames, job.graph_cfg
    valid, valid_playlists, keys, track_counts = _split_and_count(frames.valid, frames.valid_playlists, job)
    # One name per track URI: the first playlist (in file order) naming a URI sets its name.
    # Later playlists naming it otherwise are quarantined (track_name_conflict). This is rare, so
    # the split and the counts are then simply redone without them.
    conflicts = [r.track_uri for r in track_counts.where("name_h_min != name_h_max").select("track_uri").collect()]
    quarantine = frames.quarantine
    if conflicts:
        conflicted = job.cache.keep(_name_conflicts(valid, track_counts, conflicts))
        valid, valid_playlists = (df.drop("split").join(conflicted.select("pid", "file_index", "ordinal"),
                                               ["pid", "file_index", "ordinal"], "left_anti")
                         for df in (valid, valid_playlists))
        job.cache.drop(track_counts)
        valid, valid_playlists, keys, track_counts = _split_and_count(valid, valid_playlists, job)
        quarantine = quarantine.unionByName(conflicted.select(*quarantine.columns))
    quarantine = job.cache.keep(quarantine)
    q_rows = quarantine.groupBy("rule", F.col("rule").isin(*mpd.FILE_RULES).alias("file_level")).agg(
        F.count("*").alias("n"), F.sum("num_tracks").alias("occ")).collect()
    n_quarantined = sum(r.n for r in q_rows)
    if graph_cfg.strict and n_quarantined:
        sample = quarantine.limit(5).collect()
        raise InputError(f"{n_quarantined} bad inputs with graph.strict=true, e.g. "
                         + "; ".join(f"{r.file} pid {r.pid}: {r.reason}" for r in sample))
    playlists = job.cache.keep(valid_playlists.select("pid", "name", "name_norm", "has_description", "modified_at",
                                              "num_followers", "num_edits", "num_tracks", "split"))
    frames.valid, frames.playlists, frames.track_counts, frames.quarantine = valid, playlists, track_counts, quarantine
    job.counts.valid, job.counts.quarantine_rows = keys.num_rows, q_rows


def _catalogue(job: Job) -> None:
    """Step 3 and the track ids of step 5: tracks in >= min_playlists train playlists, numbered
    by (train playlist count desc, track_uri)."""
    frames, graph_cfg = job.frames, job.graph_cfg
    # every track's metadata (its first occurrence's), for the catalogue and the statistics
    tracks = job.cache.keep(_first_metadata(frames.valid, frames.track_counts.select("first_order", "train_playlists")),
                            StorageLevel.DISK_ONLY)
    catalogue = tracks.where(F.col("train_playlists") >= graph_cfg.min_playlists)
    catalogue = dense_ids(catalogue, "track_idx", [F.desc("train_playlists"), F.asc("track_uri")], job.cache.keep)
    catalogue = catalogue.select(*[F.col(c).cast("int") if c == "train_playlists" else c for c in schemas.TRACKS.names])
    n_tracks = catalogue.count()
    if n_tracks == 0:
        raise InputError(f"{job.input_uri}: no track is in >= {graph_cfg.min_playlists} train playlists; "
                         f"lower graph.min_playlists or use more data")
    frames.tracks, frames.catalogue = tracks, catalogue
    job.counts.tracks = n_tracks


def _graph_playlists(job: Job) -> None:
    """Steps 4 and 5: train playlists with too few catalogue tracks leave the graph; playlist ids
    for the graph's train playlists, then val, then test, each in time order."""
    frames, graph_cfg, cache = job.frames, job.graph_cfg, job.cache
    train_occ = (_occurrences(frames.valid.where("split = 'train'"), "pid", "split").where(F.col("first") & ~_held(graph_cfg))
                 .select("pid", "pos", "track_uri"))
    idx_map = frames.catalogue.select("track_uri", "track_idx")
    train_edges = cache.keep(train_occ.join(F.broadcast(idx_map), "track_uri").drop("track_uri"))
    kept_per_playlist = cache.keep(train_edges.groupBy("pid").agg(F.count("*").alias("kept")))
    graph_pids = kept_per_playlist.where(F.col("kept") >= graph_cfg.min_tracks).select("pid")
    numbered = (frames.playlists.join(graph_pids.withColumn("in_graph", F.lit(True)), "pid", "left")
          .where("split != 'train' OR in_graph")
          .withColumn("split_order", F.when(F.col("split") == "train", 0)
                      .when(F.col("split") == "val", 1).otherwise(2)))
    numbered = dense_ids(numbered, "playlist_idx", ["split_order", "modified_at", "pid"], cache.keep).drop("split_order")
    frames.train_edges, frames.kept_per_playlist, frames.numbered = train_edges, kept_per_playlist, numbered
    job.counts.graph_playlists = numbered.where("split = 'train'").count()


def _edges(job: Job) -> None:
    """Step 6: the graph's edges with their weights."""
    frames, graph_cfg = job.frames, job.graph_cfg
    weight = (1.0 / (1.0 + graph_cfg.position_decay * F.col("pos") / 100.0)
              * (1.0 + graph_cfg.followers_gain * F.log(F.col("num_followers").cast("double")))
              * (1.0 + graph_cfg.edits_gain * F.log(F.col("num_edits").cast("double"))))
    edges = (frames.train_edges.join(F.broadcast(frames.numbered.where("split = 'train'").select(
        "pid", "playlist_idx", "num_followers", "num_edits")), "pid")
             .select("playlist_idx", "track_idx", F.col("pos").cast("short").alias("pos"),
                     weight.cast("float").alias("weight")))
    frames.edges = job.cache.keep(edges)
    job.counts.edges = frames.edges.count()


def _eval_cases(job: Job) -> None:
    """Step 7: evaluation cases of the val and test playlists."""
    frames, graph_cfg = job.frames, job.graph_cfg
    catalogue_bc = job.cache.broadcast(job.spark, dict(
        (r.track_uri, r.track_idx) for r in frames.catalogue.select("track_uri", "track_idx").toLocalIterator()))
    eval_in = frames.valid.where("split != 'train'").select(
        "pid", "split", "name", F.col("tracks.track_uri").alias("uris"),
        F.col("tracks.artist_uri").alias("artists"))
    fn = _eval_cases_fn(catalogue_bc, graph_cfg.eval_random_seed, graph_cfg.seed_protocol)
    new_playlists = eval_in.mapInArrow(fn, schemas.spark_schema(schemas.EVAL))
    frames.cases = job.cache.keep(new_playlists.unionByName(_graph_cases(job, catalogue_bc)))


def _graph_cases(job: Job, catalogue_bc) -> DataFrame:
    """Cases of the graph playlists with held-out tracks (musicmap.cases): their other tracks
    as seeds, in playlist order."""
    frames, graph_cfg = job.frames, job.graph_cfg
    chosen = _mix(F.col("pid"), graph_cfg.eval_random_seed, cases.PLAYLIST) < F.lit(graph_cfg.holdout_playlists * cases.MOD)
    in_graph = frames.numbered.where("split = 'train'").select("pid")
    occ = (_occurrences(frames.valid.where(F.col("split") == "train").where(chosen), "pid", "split", "name",
                        "num_tracks").where("first").withColumn("held", _held(graph_cfg)).join(in_graph, "pid"))
    per_playlist = occ.groupBy("pid", "name", "num_tracks").agg(
        F.sort_array(F.collect_list(F.struct("pos", "track_uri", "artist_uri", "held"))).alias("occ"),
        F.max(F.col("held").cast("int")).alias("any_held")).where("any_held = 1").drop("any_held")
    return per_playlist.mapInArrow(_graph_cases_fn(catalogue_bc, graph_cfg.eval_random_seed), schemas.spark_schema(schemas.EVAL))


def _graph_cases_fn(catalogue_bc, eval_random_seed: int):
    """mapInArrow function: a graph playlist's first occurrences (sorted by pos, held flags) ->
    its EVAL row (split by musicmap.cases.split_of)."""

    def fn(batches):
        catalogue = catalogue_bc.value
        for batch in batches:
            rows = {f: [] for f in schemas.EVAL.names}
            for r in batch.to_pylist():
                kept = [o for o in r["occ"] if not o["held"]]
                held = [o for o in r["occ"] if o["held"]]
                seed_uris = [o["track_uri"] for o in kept]
                for f, v in (("pid", r["pid"]), ("split", cases.split_of(r["pid"], eval_random_seed)),
                             ("category", cases.CATEGORY), ("name", r["name"]), ("num_tracks", r["num_tracks"]),
                             ("seed_idx", [catalogue[u] for u in seed_uris if u in catalogue]), ("seed_uris", seed_uris),
                             ("holdout_uris", [o["track_uri"] for o in held]),
                             ("holdout_artist_uris", [o["artist_uri"] for o in held])):
                    rows[f].append(v)
            yield pa.RecordBatch.from_pydict(rows, schema=schemas.EVAL)
    return fn


def _write(job: Job, out: storage.StageWriter) -> None:
    """The tables, under the staging version: visible only after the commit."""
    frames, n_valid = job.frames, job.counts.valid
    write_table(frames.edges, out.path("edges"), "EDGES", max_rows_per_file=job.graph_cfg.rows_per_part)
    write_table(frames.catalogue, out.path("tracks"), "TRACKS", max(1, math.ceil(job.counts.tracks / 2_000_000)))
    write_table(frames.numbered.select(*schemas.PLAYLISTS.names), out.path("playlists"), "PLAYLISTS",
                max(1, math.ceil(n_valid / 2_000_000)))
    write_table(frames.cases, out.path("eval"), "EVAL", max(1, math.ceil(n_valid / 1_000_000)))
    write_table(frames.quarantine, out.path("quarantine"), "QUARANTINE", 1)


def dense_ids(df: DataFrame, name: str, order: list, keep) -> DataFrame:
    """df with `name` = 0, 1, 2, ... in the order of `order` (a total order: its keys are unique).

    A row_number over an unpartitioned window sorts every row in one task. Here the rows are
    range-partitioned (spark.sql.shuffle.partitions ranges) and sorted within each range. A
    row's place in its range comes from monotonically_increasing_id (range << 33 | row), and
    each range's first id from one small aggregate of the range sizes. The sorted frame is
    cached (`keep`, e.g. Cache.keep), so the sizes and the ids come from the same ranges."""
    mono, spark = "_dense_id_mono", df.sparkSession
    ranges = int(spark.conf.get("spark.sql.shuffle.partitions"))
    ranked = keep(df.repartitionByRange(ranges, *order).sortWithinPartitions(*order)
                  .withColumn(mono, F.monotonically_increasing_id()))
    part = F.shiftright(F.col(mono), 33)
    sizes = sorted(tuple(r) for r in ranked.groupBy(part.alias("p")).agg(F.count("*")).collect())
    starts = [(p, sum(n for _, n in sizes[:i])) for i, (p, _) in enumerate(sizes)]
    first = spark.createDataFrame(starts, "_dense_id_p long, _dense_id_start long")
    row = F.col(mono).bitwiseAND(F.lit((1 << 33) - 1))
    return (ranked.join(F.broadcast(first), part == F.col("_dense_id_p"))
            .withColumn(name, (F.col("_dense_id_start") + row).cast("int"))
            .drop(mono, "_dense_id_p", "_dense_id_start"))


def _split_and_count(valid: DataFrame, valid_playlists: DataFrame, job: Job):
    """(valid and valid_playlists with a split column, the (modified_at, pid) keys, the per-track aggregate)."""
    keys = valid_playlists.select("modified_at", "pid").toArrow()
    if keys.num_rows == 0:
        raise InputError(f"{job.input_uri}: no valid playlist in {len(job.inputs.slices)} file(s); see the "
                         f"quarantine (run `musicmap check {job.input_uri}`)")
    cut_train, cut_val, _, _ = split_cutoffs(
        keys["modified_at"].to_numpy(), keys["pid"].to_numpy(), job.graph_cfg.train_fraction, job.graph_cfg.val_fraction)
    split = F.when(_le(cut_train), "train").when(_le(cut_val), "val").otherwise("test")
    valid, valid_playlists = valid.withColumn("split", split), valid_playlists.withColumn("split", split)
    return valid, valid_playlists, keys, job.cache.keep(_track_aggregate(valid, job.graph_cfg))


def _occurrences(valid: DataFrame, *cols: str) -> DataFrame:
    """One row per track occurrence of `valid` (cols of its playlist, the TRACK_STRUCT fields) and
    `order`: its place in file order as one long, unique per occurrence (pos < 256)."""
    return valid.select("file_index", "ordinal", *cols, F.inline("tracks")).withColumn(
        "order", F.col("file_index").cast("long") * (1 << 32) + F.col("ordinal").cast("long") * 256
        + F.col("pos").cast("long"))


def _mix(x, random_seed: int, salt: int):
    """musicmap.cases.mix as a Spark column (every product fits a long)."""
    c = random_seed * cases.SEED_MULT + salt * cases.SALT_MULT
    return F.pmod(F.pmod(x, F.lit(cases.MOD)) * F.lit(cases.MULT) + F.lit(c), F.lit(cases.MOD))


def _held(graph_cfg) -> "F.Column":
    """musicmap.cases.held_out for an occurrence row (pid, pos, first, split): the first occurrence
    of a track in a train playlist whose track is held out for evaluation."""
    playlist = _mix(F.col("pid"), graph_cfg.eval_random_seed, cases.PLAYLIST) < F.lit(graph_cfg.holdout_playlists * cases.MOD)
    track = _mix(F.col("pid") * 256 + F.col("pos"), graph_cfg.eval_random_seed, cases.TRACK) < F.lit(graph_cfg.holdout_tracks * cases.MOD)
    return (F.col("split") == "train") & F.col("first") & playlist & track


def _track_aggregate(valid: DataFrame, graph_cfg) -> DataFrame:
    """One row per distinct track URI of the valid playlists: where it first occurs in file order
    (first_order, see _occurrences), the least and greatest hash of the names it was given (equal
    unless it has two names), the number of train playlists holding it (train_playlists; a held-out
    occurrence does not count) and of its held-out occurrences (held_out).
    Only fixed-width values: Spark aggregates them in a hash map (metadata strings here would make
    it sort all occurrences); the metadata is fetched by first_order (_first_metadata)."""
    name_h = F.xxhash64("track_name")
    held = _held(graph_cfg)
    return _occurrences(valid, "pid", "split").groupBy("track_uri").agg(
        F.min("order").alias("first_order"),
        F.min(name_h).alias("name_h_min"), F.max(name_h).alias("name_h_max"),
        F.sum(((F.col("split") == "train") & F.col("first") & ~held).cast("int")).cast("long").alias("train_playlists"),
        F.sum(held.cast("int")).cast("long").alias("held_out"),
    )


def _first_metadata(valid: DataFrame, wanted: DataFrame) -> DataFrame:
    """The occurrence at each first_order of `wanted` (its other columns kept) with its track
    metadata: one pass over the occurrences, joined on one long with `wanted` broadcast."""
    return (_occurrences(valid).join(F.broadcast(wanted), F.col("order") == F.col("first_order"))
            .drop("file_index", "ordinal", "pos", "first", "order", "first_order"))


def _name_conflicts(valid: DataFrame, track_counts: DataFrame, uris: list[str]) -> DataFrame:
    """Playlists naming one of `uris` otherwise than its first occurrence did (QUARANTINE columns
    plus file_index and ordinal)."""
    first = F.broadcast(_first_metadata(valid, track_counts.where(F.col("track_uri").isin(uris))
                                        .select("first_order"))
                        .select("track_uri", F.col("track_name").alias("first_name")))
    occ = _occurrences(valid, "file", "pid", "num_tracks")
    return (occ.join(first, "track_uri").where(F.col("track_name") != F.col("first_name"))
            .groupBy("file", "file_index", "ordinal", "pid", "num_tracks")
            .agg(F.first(F.concat(F.lit("track_name_conflict: "), F.col("track_uri"), F.lit(" is '"),
                                  F.col("first_name"), F.lit("' elsewhere and '"), F.col("track_name"),
                                  F.lit("' here"))).alias("reason"))
            .withColumn("rule", F.lit("track_name_conflict")))


def _eval_cases_fn(catalogue_bc, eval_random_seed: int, seed_protocol: bool):
    """mapInArrow function: val/test playlists -> EVAL rows (see module doc, step 7)."""

    def fn(batches):
        catalogue = catalogue_bc.value
        for batch in batches:
            rows = {f: [] for f in schemas.EVAL.names}

            def emit(pid, split, category, name, n, seed_pos, uris, artists):
                seed_uris = [uris[i] for i in seed_pos]
                held = cases.holdout_positions(uris, seed_pos)
                hold, hold_art = [uris[j] for j in held], [artists[j] for j in held]
                seed_idx = cases.seed_ids(seed_uris, catalogue)
                for f, v in (("pid", pid), ("split", split), ("category", category), ("name", name),
                             ("num_tracks", n), ("seed_idx", seed_idx), ("seed_uris", seed_uris),
                             ("holdout_uris", hold), ("holdout_artist_uris", hold_art)):
                    rows[f].append(v)

            for r in batch.to_pylist():
                uris, artists = r["uris"], r["artists"]
                n = len(uris)
                drawn = cases.challenge_case(r["pid"], n, eval_random_seed)
                if drawn:
                    c, pos = drawn
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


def _stats(job: Job) -> dict:
    """graph/stats.json: graph statistics, the reconciliation, and the input's official numbers."""
    agg, counts, graph_cfg = _aggregates(job), job.counts, job.graph_cfg
    stats = {"reconciliation": _reconciliation(job, agg),
             "graph": {"playlists": counts.graph_playlists, "tracks": counts.tracks, "interactions": counts.edges,
                       "directed_entries": 2 * counts.edges, "nodes": counts.graph_playlists + counts.tracks,
                       "sparsity": counts.edges / max(1, counts.graph_playlists * counts.tracks),
                       "playlist_degree": _degree(job.frames.edges, "playlist_idx", counts.graph_playlists),
                       "track_degree": _degree(job.frames.edges, "track_idx", counts.tracks),
                       "eval_playlists": agg.by_split.get("val", (0, 0))[0] + agg.by_split.get("test", (0, 0))[0],
                       "eval_cases": agg.case_counts},
             "input_official": _official(agg)}
    distinct_train = int(agg.track_totals.train_tracks or 0)
    stats["filters"] = {"min_playlists": graph_cfg.min_playlists, "min_tracks": graph_cfg.min_tracks,
                        "train_tracks_seen": distinct_train,
                        "tracks_removed_min_playlists": distinct_train - counts.tracks,
                        "train_playlists_removed_min_tracks": agg.removed_playlists}
    rec = stats["reconciliation"]
    rec["checks"] = _checks(rec)
    if not all(rec["checks"].values()):
        raise AssertionError(f"reconciliation failed: {rec}")
    return stats


@dataclass
class Aggregates:
    """The counts the stats are made of, one small Spark aggregate each (Rows where the
    aggregate has several columns)."""
    read: object = None             # playlists and occurrences read (unreadable files left out)
    by_split: dict = field(default_factory=dict)   # split: (playlists, occurrences)
    n_valid: int = 0
    occ_valid: int = 0
    track_totals: object = None     # over track URIs: unique_occ, held_out, catalogue_occ, train_tracks, tracks
    metadata: object = None         # tracks, albums, artists with metadata
    kept: object = None             # over train playlists: kept_occ, removed_occ, removed_pl, with_catalogue
    removed_playlists: int = 0      # train playlists out of the graph (too few or no catalogue tracks)
    titles: object = None           # distinct titles, normalised titles, descriptions
    case_counts: dict = field(default_factory=dict)   # "split/category": cases


def _aggregates(job: Job) -> Aggregates:
    """The counts the stats are made of, one small Spark aggregate each."""
    frames, graph_cfg = job.frames, job.graph_cfg
    # a row is a playlist unless it is a file that could not be read (its pid may be null)
    playlist_rows = frames.raw_playlists.where(F.col("reason").isNull()
                                       | ~F.split("reason", ":").getItem(0).isin(*mpd.FILE_RULES))
    agg = Aggregates(
        read=playlist_rows.agg(F.count("*").alias("playlists"), F.sum("num_tracks").alias("occ")).first(),
        by_split={r.split: (r.n, int(r.occ or 0)) for r in frames.playlists.groupBy("split").agg(
            F.count("*").alias("n"), F.sum("num_tracks").alias("occ")).collect()})
    agg.n_valid = sum(n for n, _ in agg.by_split.values())
    agg.occ_valid = sum(occ for _, occ in agg.by_split.values())
    agg.track_totals = frames.track_counts.agg(
        F.sum("train_playlists").alias("unique_occ"), F.sum("held_out").alias("held_out"),
        F.sum(F.when(F.col("train_playlists") >= graph_cfg.min_playlists, F.col("train_playlists"))).alias("catalogue_occ"),
        F.sum(F.when(F.col("train_playlists") > 0, 1)).alias("train_tracks"),
        F.count("*").alias("tracks")).first()
    agg.metadata = frames.tracks.agg(F.count("*").alias("tracks"), F.countDistinct("album_uri").alias("albums"),
                                 F.countDistinct("artist_uri").alias("artists")).first()
    if agg.metadata.tracks != agg.track_totals.tracks:
        raise AssertionError(f"metadata found for {agg.metadata.tracks} of {agg.track_totals.tracks} tracks")
    agg.kept = frames.kept_per_playlist.agg(
        F.sum(F.when(F.col("kept") >= graph_cfg.min_tracks, F.col("kept"))).alias("kept_occ"),
        F.sum(F.when(F.col("kept") < graph_cfg.min_tracks, F.col("kept"))).alias("removed_occ"),
        F.sum(F.when(F.col("kept") < graph_cfg.min_tracks, 1)).alias("removed_pl"),
        F.count("*").alias("with_catalogue")).first()
    # removed: too few catalogue tracks, or none at all (no row in kept_per_playlist)
    agg.removed_playlists = (agg.kept.removed_pl or 0) + agg.by_split.get("train", (0, 0))[0] - agg.kept.with_catalogue
    agg.titles = frames.playlists.agg(F.countDistinct("name").alias("t"), F.countDistinct("name_norm").alias("tn"),
                                      F.sum(F.col("has_description").cast("int")).alias("d")).first()
    agg.case_counts = {f"{r.split}/{r.category}": r.n for r in
                        frames.cases.groupBy("split", "category").agg(F.count("*").alias("n")).collect()}
    return agg


def _reconciliation(job: Job, agg: Aggregates) -> dict:
    """Where every playlist and occurrence read went."""
    quarantine, file_level = {}, {"files": 0}
    for r in job.counts.quarantine_rows:
        if r.file_level:
            file_level["files"] += r.n
            file_level[r.rule] = file_level.get(r.rule, 0) + r.n
        else:
            q = quarantine.setdefault(r.rule, {"playlists": 0, "occurrences": 0})
            q["playlists"] += r.n
            q["occurrences"] += int(r.occ or 0)
    by_split, inputs = agg.by_split, job.inputs
    occ_train = by_split.get("train", (0, 0))[1]
    unique_occ = int(agg.track_totals.unique_occ or 0)
    held = int(agg.track_totals.held_out or 0)
    return {
        "files": {"read": len(inputs.slices), "unreadable": file_level, "folder": inputs.folder,
                  "ignored": len(inputs.ignored), "ignored_names": inputs.ignored[:50]},
        "playlists": {
            "read": agg.read.playlists,
            "quarantined": sum(q["playlists"] for q in quarantine.values()),
            "quarantined_by_rule": {k: v["playlists"] for k, v in quarantine.items()},
            "valid": agg.n_valid,
            "by_split": {k: v[0] for k, v in by_split.items()},
            "train_in_graph": job.counts.graph_playlists,
            "train_removed_min_tracks": agg.removed_playlists,
        },
        "occurrences": {
            "read": int(agg.read.occ or 0),
            "quarantined": sum(q["occurrences"] for q in quarantine.values()),
            "valid": agg.occ_valid,
            "by_split": {k: v[1] for k, v in by_split.items()},
            "train": {
                "total": occ_train,
                "repeats_within_playlist": occ_train - unique_occ - held,
                "held_out_for_evaluation": held,
                "removed_track_filter": unique_occ - int(agg.track_totals.catalogue_occ or 0),
                "removed_with_playlist_min_tracks": int(agg.kept.removed_occ or 0),
                "edges": job.counts.edges,
            },
        },
        "checks": {},
    }


def _official(agg: Aggregates) -> dict:
    """The input's numbers as the MPD's own stats script reports them (valid playlists only)."""
    n_valid, occ_valid = agg.n_valid, agg.occ_valid
    return {"playlists": n_valid, "tracks": occ_valid, "unique_tracks": agg.track_totals.tracks,
            "unique_albums": agg.metadata.albums, "unique_artists": agg.metadata.artists,
            "unique_titles": agg.titles.t, "unique_normalized_titles": agg.titles.tn,
            "playlists_with_descriptions": int(agg.titles.d or 0),
            "avg_playlist_length": round(occ_valid / n_valid, 6) if n_valid else 0.0}


def _checks(rec: dict) -> dict:
    p, o, t = rec["playlists"], rec["occurrences"], rec["occurrences"]["train"]
    return {
        "playlists: read = valid + quarantined": p["read"] == p["valid"] + p["quarantined"],
        "playlists: valid = train + val + test": p["valid"] == sum(p["by_split"].values()),
        "playlists: train = in graph + removed": p["by_split"].get("train", 0)
        == p["train_in_graph"] + p["train_removed_min_tracks"],
        "occurrences: read = valid + quarantined": o["read"] == o["valid"] + o["quarantined"],
        "occurrences: valid = train + val + test": o["valid"] == sum(o["by_split"].values()),
        "occurrences: train = edges + repeats + held out + track filter + removed playlists":
            t["total"] == t["edges"] + t["repeats_within_playlist"] + t["held_out_for_evaluation"]
            + t["removed_track_filter"] + t["removed_with_playlist_min_tracks"],
    }
