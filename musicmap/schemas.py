"""The Parquet schemas of every stage output: the single source of truth. Writers (Spark via
`spark_schema()`, the trainer and recommend job via pyarrow) and readers all use these.

Layout under the storage root (each stage folder is committed atomically, see musicmap.storage):
    graph/<version>/tracks/       TRACKS        one row per catalogue track, track_idx dense 0..T-1
    graph/<version>/playlists/    PLAYLISTS     train graph playlists (playlist_idx 0..P-1), then val/test
    graph/<version>/edges/        EDGES         train edges
    graph/<version>/eval/         EVAL          one row per val/test evaluation case
    graph/<version>/quarantine/   QUARANTINE    rejected input
    graph/<version>/stats.json
    recs/<version>/               RECS          top-K per playlist (and case)
    map/<version>/tracks.parquet  MAP_TRACKS    the music map: layout, region and label per track
"""
from __future__ import annotations

import pyarrow as pa

TRACK_STRUCT = pa.struct([
    ("pos", pa.int32()), ("track_uri", pa.string()), ("track_name", pa.string()),
    ("artist_uri", pa.string()), ("artist_name", pa.string()), ("album_uri", pa.string()),
    ("album_name", pa.string()), ("duration_ms", pa.int64()),
    ("first", pa.bool_()),  # first occurrence of this track_uri in the playlist
])

# What the Spark MPD reader yields: one row per playlist read (valid or quarantined), or one row
# per unreadable file (pid null). `reason` is null for a valid playlist.
RAW_PLAYLISTS = pa.schema([
    ("file", pa.string()), ("file_index", pa.int32()), ("ordinal", pa.int32()), ("pid", pa.int64()),
    ("name", pa.string()), ("name_norm", pa.string()), ("has_description", pa.bool_()),
    ("modified_at", pa.int64()), ("num_followers", pa.int64()), ("num_edits", pa.int64()),
    ("num_tracks", pa.int32()),  # tracks in the list as read (0 when there is no list)
    ("reason", pa.string()), ("tracks", pa.list_(TRACK_STRUCT)),
])

TRACKS = pa.schema([
    ("track_idx", pa.int32()), ("track_uri", pa.string()), ("track_name", pa.string()),
    ("artist_uri", pa.string()), ("artist_name", pa.string()), ("album_uri", pa.string()),
    ("album_name", pa.string()), ("duration_ms", pa.int64()),
    ("train_playlists", pa.int32()),  # train playlists containing the track (the filter's count)
])

PLAYLISTS = pa.schema([
    ("playlist_idx", pa.int32()), ("pid", pa.int64()), ("name", pa.string()),
    ("modified_at", pa.int64()), ("num_followers", pa.int64()), ("num_edits", pa.int64()),
    ("num_tracks", pa.int32()), ("split", pa.string()),  # train / val / test
])

EDGES = pa.schema([
    ("playlist_idx", pa.int32()), ("track_idx", pa.int32()), ("pos", pa.int16()),
    ("weight", pa.float32()),
])

EVAL = pa.schema([
    ("pid", pa.int64()), ("split", pa.string()),
    ("category", pa.string()),            # a musicmap.mpd.CHALLENGE_CATEGORIES name or "seed_half"
    ("name", pa.string()),                # null when the category hides the title
    ("num_tracks", pa.int32()),
    ("seed_idx", pa.list_(pa.int32())),   # in-catalogue seed tracks, in playlist order
    ("seed_uris", pa.list_(pa.string())),  # every seed track (in and out of the catalogue)
    ("holdout_uris", pa.list_(pa.string())),         # unique held-out tracks, OOV kept
    ("holdout_artist_uris", pa.list_(pa.string())),  # their artists (for the artist R-precision)
])

QUARANTINE = pa.schema([
    ("file", pa.string()), ("pid", pa.int64()), ("rule", pa.string()), ("reason", pa.string()),
    ("num_tracks", pa.int32()),
])

RECS = pa.schema([
    ("pid", pa.int64()),
    ("category", pa.string()),  # eval case category; "train" for graph playlists, "challenge"
    ("rank", pa.int16()),       # 1..K
    ("track_uri", pa.string()), ("score", pa.float32()),
])

MAP_TRACKS = pa.schema([   # map/<version>/tracks.parquet, one row per catalogue track
    ("track_idx", pa.int32()), ("x", pa.float32()), ("y", pa.float32()),
    ("cluster", pa.int16()),   # the map region
    ("label", pa.string()),    # the region's label (its top artists and title words)
])

GRAPH_TABLES = {"tracks": TRACKS, "playlists": PLAYLISTS, "edges": EDGES, "eval": EVAL,
                "quarantine": QUARANTINE}


def spark_schema(schema: pa.Schema):
    """The Spark StructType of a pyarrow schema (for the Spark side's readers and writers)."""
    # Imported here: the torch side reads these schemas too and never needs pyspark.
    from pyspark.sql.pandas.types import from_arrow_schema
    return from_arrow_schema(schema)
