"""Spark Python data sources that reach storage through fsspec (musicmap.storage), so the job
reads and writes s3://, gs:// and local paths the same way on any Spark 4 cluster, with no
Hadoop connector jars (S3A) needed.

    spark.dataSource.register(MPDSource); spark.dataSource.register(ParquetSink)
    raw = spark.read.format("musicmap_mpd").options(**opts, path=uri).load()
    df.write.format("musicmap_parquet").options(**opts, path=table_uri).mode("overwrite").save()

MPDSource: one partition (task) per slice file. Each file is parsed and every playlist checked
against the MPD rules (musicmap.mpd) on the executor; it yields one Arrow batch per file with a
row per playlist (schemas.RAW_PLAYLISTS), `reason` set for a rule-breaking playlist, or one row
with pid null for a file that cannot be read.

ParquetSink: each task writes one Parquet part file (with the max_rows_per_file option, several
of at most that many rows); the driver's commit() keeps exactly the files of the successful task
attempts (a retried or speculative attempt's leftovers are deleted).
Visibility is governed by the stage's commit marker (musicmap.storage.StageWriter).
"""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from pyspark import TaskContext
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)

from musicmap import mpd, schemas, storage
from musicmap.inputs import SliceFile as Listed
from musicmap.inputs import list_inputs, read_slice_file
from musicmap.schemas import RAW_PLAYLISTS, TRACK_STRUCT, spark_schema

STORAGE_OPTION_PREFIX = "storage."


def storage_options() -> dict[str, str]:
    """The driver's storage options as data source options (Spark redacts the secret ones in
    plans and UIs: their names contain 'secret' / 'key')."""
    return {STORAGE_OPTION_PREFIX + k: str(v) for k, v in storage.options_dict().items() if v is not None}


def _configure_from(options: dict) -> None:
    kw = {}
    for k, v in options.items():
        if k.startswith(STORAGE_OPTION_PREFIX):
            name = k[len(STORAGE_OPTION_PREFIX):]
            kw[name] = float(v) if name == "retry_backoff_s" else int(v) if name == "retries" else v
    storage.configure(**kw)


# ----------------------------------------------------------------------------- reading

@dataclass
class SliceFile(InputPartition):
    uri: str
    index: int
    name: str = ""              # the file name (a chained zip:// URI ends in the archive's name)
    size: int | None = None     # as listed (musicmap.inputs: a file rewritten meanwhile is caught)
    token: str | None = None


class MPDSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "musicmap_mpd"

    def schema(self):
        return spark_schema(RAW_PLAYLISTS)

    def reader(self, schema):
        return MPDReader(dict(self.options))


class MPDReader(DataSourceReader):
    def __init__(self, options: dict):
        self.options = options

    def partitions(self):
        _configure_from(self.options)
        files = list_inputs(self.options["path"]).slices
        return [SliceFile(f.uri, i, f.name, f.size, f.token) for i, f in enumerate(files)]

    def read(self, partition: SliceFile):
        _configure_from(self.options)
        name = partition.name
        try:
            data = read_slice_file(Listed(partition.uri, name, partition.size, partition.token))
        except mpd.SliceError as e:
            yield file_error(name, partition.index, e)
            return
        yield read_slice(name, partition.index, data)


def file_error(name: str, index: int, e):
    """The RAW_PLAYLISTS row of a file that cannot be read: pid null, reason '<rule>: <detail>'."""
    row = {f.name: [None] for f in RAW_PLAYLISTS}
    row.update(file=[name], file_index=[index], ordinal=[0], num_tracks=[0],
               reason=[f"{e.rule}: {e.detail}"], tracks=[[]])
    return pa.RecordBatch.from_pydict(row, schema=RAW_PLAYLISTS)


def read_slice(name: str, index: int, data: bytes):
    """One slice file's (decompressed) bytes -> a RAW_PLAYLISTS record batch (see module doc).

    A file that passes every rule takes the fast path (pyarrow's C++ JSON parser, rules checked on
    whole columns, ~10x faster); anything the fast path does not accept, for whatever reason, is
    re-read by the exact per-playlist path, which names each playlist's violations."""
    try:
        batch = fast_slice(name, index, data)
    except (pa.ArrowException, ValueError, OverflowError):
        batch = None  # e.g. bytes that are not UTF-8 inside a string: the exact path says so
    return batch if batch is not None else exact_slice(name, index, data)


def _mpd_arrow_schema():
    """The MPD file layout as a pyarrow schema for the JSON reader (one row per file)."""
    kinds = {str: pa.string(), int: pa.int64(), list: None}
    track = pa.struct([(k, kinds[t]) for k, t in mpd.TRACK_FIELDS.items()])
    fields = [(k, pa.list_(track) if t is list else kinds[t]) for k, t in
              (*mpd.PLAYLIST_FIELDS.items(), *mpd.OPTIONAL_PLAYLIST_FIELDS.items())]
    return pa.schema([("info", pa.struct([("generated_on", pa.string()), ("slice", pa.string()),
                                          ("version", pa.string())])),
                      ("playlists", pa.list_(pa.struct(fields)))])


def fast_slice(name: str, index: int, data: bytes):
    """RAW_PLAYLISTS batch of a slice whose every playlist is valid, or None (use exact_slice).

    pyarrow's JSON reader with the exact MPD schema refuses wrong types, unknown fields, repeated
    keys and bad JSON; the value rules of musicmap.mpd.validate_playlist are then checked on
    whole columns. Any doubt returns None."""
    parsed = _parse_columns(data)
    if parsed is None or not _values_ok(*parsed):
        return None
    col, t, lens, offsets = parsed
    n = len(lens)
    owner = np.repeat(np.arange(n), lens)
    # first occurrence of a track in its playlist
    ids = pc.dictionary_encode(t["track_uri"]).indices.to_numpy().astype(np.int64)
    key = owner * (int(ids.max(initial=0)) + 1) + ids
    first = np.zeros(len(key), bool)
    first[np.unique(key, return_index=True)[1]] = True
    track_arr = pa.StructArray.from_arrays(
        [pa.array(t["pos"].to_numpy().astype(np.int32)) if f.name == "pos" else pa.array(first)
         if f.name == "first" else t[f.name] for f in TRACK_STRUCT], fields=list(TRACK_STRUCT))
    names = col["name"]
    cols = {
        "file": pa.array([name] * n, pa.string()), "file_index": pa.array(np.full(n, index, np.int32)),
        "ordinal": pa.array(np.arange(n, dtype=np.int32)), "pid": col["pid"], "name": names,
        "name_norm": pa.array([mpd.normalize_title(x) for x in names.to_pylist()], pa.string()),
        "has_description": pc.is_valid(col["description"]), "modified_at": col["modified_at"],
        "num_followers": col["num_followers"], "num_edits": col["num_edits"],
        "num_tracks": pa.array(lens.astype(np.int32)), "reason": pa.nulls(n, pa.string()),
        "tracks": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), track_arr),
    }
    return pa.RecordBatch.from_arrays([cols[f.name] for f in RAW_PLAYLISTS], schema=RAW_PLAYLISTS)


def _parse_columns(data: bytes):
    """(playlist columns, track columns, tracks per playlist, track list offsets) of a slice
    that pyarrow reads with the exact MPD schema and no missing value; else None."""
    try:
        doc = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(
            use_threads=False, block_size=len(data) + 1), parse_options=pj.ParseOptions(
            explicit_schema=_mpd_arrow_schema(), newlines_in_values=True,
            unexpected_field_behavior="error"))
        # The JSON reader does not check the bytes inside strings. A full validation checks every
        # string value for UTF-8, 20x faster than decoding the whole file first.
        doc.validate(full=True)
    except (pa.ArrowException, ValueError, OverflowError):  # UnicodeDecodeError is a ValueError
        return None
    if doc.num_rows != 1 or doc["info"].null_count or doc["playlists"].null_count:
        return None
    pls = doc["playlists"].combine_chunks()
    pl = pls.values if len(pls) else None
    if pl is None or pl.null_count:
        return None
    col = {f.name: pl.field(f.name) for f in pl.type}
    if any(col[k].null_count for k in mpd.PLAYLIST_FIELDS):
        return None  # a missing field
    tracks = col["tracks"]
    if tracks.offset or pl.offset:
        return None
    tv = tracks.values
    if tv.null_count or any(tv.field(k).null_count for k in mpd.TRACK_FIELDS):
        return None
    lens = pc.list_value_length(tracks).to_numpy(zero_copy_only=False)
    offsets = tracks.offsets.to_numpy()
    if offsets[0] != 0 or len(tv) != lens.sum():
        return None
    return col, {k: tv.field(k) for k in mpd.TRACK_FIELDS}, lens, offsets


def _values_ok(col: dict, t: dict, lens, offsets) -> bool:
    """Whether every playlist keeps the value rules of musicmap.mpd.validate_playlist."""
    n = len(lens)
    owner = np.repeat(np.arange(n), lens)
    pos = t["pos"].to_numpy()
    ok = (lens >= mpd.MIN_TRACKS) & (lens <= mpd.MAX_TRACKS)
    ok &= col["num_tracks"].to_numpy() == lens
    ok &= (col["num_followers"].to_numpy() >= 1) & (col["num_edits"].to_numpy() >= 1)
    ok &= pc.is_in(col["collaborative"], pa.array(["true", "false"])).to_numpy(zero_copy_only=False)
    ok &= pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(col["name"])), 0).to_numpy(
        zero_copy_only=False)
    if not ok.all() or not (pos == np.arange(len(pos)) - np.repeat(offsets[:-1], lens)).all():
        return False
    for k, rx in mpd.URI_RE.items():
        if not pc.all(pc.match_substring_regex(t[k], "^" + rx.pattern + "$")).as_py():
            return False
    dur = np.bincount(owner, weights=t["duration_ms"].to_numpy(), minlength=n)
    if not (dur == col["duration_ms"].to_numpy()).all() or np.abs(dur).max(initial=0) > 2 ** 52:
        return False
    for k, field, least in (("artist_uri", "num_artists", mpd.MIN_ARTISTS),
                            ("album_uri", "num_albums", mpd.MIN_ALBUMS)):
        distinct = _distinct_per_list(owner, t[k], n)
        if not ((distinct == col[field].to_numpy()) & (distinct >= least)).all():
            return False
    return True


def _distinct_per_list(owner, values, n: int):
    """Number of distinct values in each of n lists (owner: list index of each value)."""
    ids = pc.dictionary_encode(values).indices.to_numpy().astype(np.int64)
    key = np.unique(owner * (int(ids.max(initial=0)) + 1) + ids)
    return np.bincount(key // (int(ids.max(initial=0)) + 1), minlength=n)


def exact_slice(name: str, index: int, data: bytes):
    """RAW_PLAYLISTS batch of any slice file, playlist by playlist with musicmap.mpd's rules."""
    cols = {f: [] for f in RAW_PLAYLISTS.names if f != "tracks"}
    tcols = {f: [] for f in TRACK_STRUCT.names}
    offsets = [0]

    def add(pid, reason, p=None, ntracks=0):
        cols["file"].append(name)
        cols["file_index"].append(index)
        cols["ordinal"].append(len(cols["pid"]))
        cols["pid"].append(pid)
        cols["reason"].append(reason)
        cols["num_tracks"].append(ntracks)
        ok = reason is None
        cols["name"].append(p["name"] if ok else None)
        cols["name_norm"].append(mpd.normalize_title(p["name"]) if ok else None)
        cols["has_description"].append("description" in p if ok else None)
        for f in ("modified_at", "num_followers", "num_edits"):
            cols[f].append(p[f] if ok else None)
        offsets.append(len(tcols["pos"]))

    try:
        playlists = mpd.parse_slice(data)
    except mpd.SliceError as e:
        add(None, f"{e.rule}: {e.detail}")
    else:
        for p in playlists:
            pid = p.get("pid") if isinstance(p, dict) else None
            if not isinstance(pid, int) or isinstance(pid, bool) or not mpd.INT64[0] <= pid <= mpd.INT64[1]:
                pid = None  # the quarantine shows it as null (its reason says what it was)
            tracks = p.get("tracks") if isinstance(p, dict) else None
            n = len(tracks) if isinstance(tracks, list) else 0
            bad = mpd.validate_playlist(p)
            if pid is None and not bad:
                bad = [mpd.Violation("wrong_type", "pid")]
            if bad:
                add(pid, "; ".join(map(str, bad)), ntracks=n)
                continue
            seen = set()
            for t in tracks:
                u = t["track_uri"]
                tcols["pos"].append(t["pos"])
                tcols["track_uri"].append(u)
                tcols["track_name"].append(t["track_name"])
                tcols["artist_uri"].append(t["artist_uri"])
                tcols["artist_name"].append(t["artist_name"])
                tcols["album_uri"].append(t["album_uri"])
                tcols["album_name"].append(t["album_name"])
                tcols["duration_ms"].append(t["duration_ms"])
                tcols["first"].append(u not in seen)
                seen.add(u)
            add(pid, None, p, n)
    struct = pa.StructArray.from_arrays(
        [pa.array(tcols[f.name], f.type) for f in TRACK_STRUCT], fields=list(TRACK_STRUCT))
    tracks_arr = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct)
    arrays = [tracks_arr if f.name == "tracks" else pa.array(cols[f.name], f.type) for f in RAW_PLAYLISTS]
    return pa.RecordBatch.from_arrays(arrays, schema=RAW_PLAYLISTS)


# ----------------------------------------------------------------------------- writing

@dataclass
class PartWritten(WriterCommitMessage):
    files: list[str]
    rows: int


class ParquetSink(DataSource):
    @classmethod
    def name(cls) -> str:
        return "musicmap_parquet"

    def writer(self, schema, overwrite: bool):
        return ParquetWriter(dict(self.options), schema)


class ParquetWriter(DataSourceArrowWriter):
    def __init__(self, options: dict, schema):
        self.options = options
        self.schema_json = schema.json()

    def _target_schema(self):
        """The declared pyarrow schema (musicmap.schemas.<name>), so files carry exact types."""
        return getattr(schemas, self.options["schema"])

    def write(self, iterator):

        _configure_from(self.options)
        target = self._target_schema()
        batches = [b for b in iterator if b.num_rows]
        table = pa.Table.from_batches(batches) if batches else target.empty_table()
        table = table.select(target.names).cast(target)
        ctx = TaskContext.get()
        attempt = uuid.uuid4().hex[:8]
        step = int(self.options.get("max_rows_per_file", 0)) or table.num_rows or 1
        names = []
        for i, start in enumerate(range(0, table.num_rows, step) or [0]):  # an empty task: one empty file
            names.append(f"part-{ctx.partitionId():05d}-{i:03d}-{attempt}.parquet")
            storage.write_parquet(table.slice(start, step), storage.join(self.options["path"], names[-1]))
        return PartWritten(names, table.num_rows)

    def commit(self, messages):
        _configure_from(self.options)
        keep = {f for m in messages if m is not None for f in m.files}
        for f in storage.listdir(self.options["path"]):
            if f.startswith("part-") and f not in keep:
                storage.remove(storage.join(self.options["path"], f))

    def abort(self, messages):
        _configure_from(self.options)
        storage.remove(self.options["path"])
