"""No input crashes check or build-graph: fuzzed slices (tests/fuzz_mpd.py) through both readers.

Properties: never an uncaught exception; a file is unreadable with a file rule, or each of its
playlists is valid or quarantined with its rules; `musicmap check` and build-graph's reader (its
fast path and its exact path) give every playlist the same verdict, decided by musicmap.mpd; and
a Spark build over fuzzed files reconciles every playlist and occurrence. Seeded and bounded
(HYPOTHESIS_PROFILE=long, `make fuzz`, runs many more examples).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter

import pytest
from fuzz_mpd import NAME, base_doc, corrupt, plans, random_plan
from hypothesis import HealthCheck, given, settings

from musicmap import mpd
from musicmap.check import check
from musicmap.spark_jobs.datasources import file_error, read_slice

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
RULES = set(mpd.FILE_RULES) | set(mpd.PLAYLIST_RULES)


def check_verdicts(name: str, data: bytes):
    """What musicmap check decides: (file rule, None) or (None, [reason or None per playlist])."""
    try:
        playlists = mpd.parse_slice(mpd.decompress(name, data))
    except mpd.SliceError as e:
        return e.rule, None
    return None, ["; ".join(map(str, v)) or None for v in map(mpd.validate_playlist, playlists)]


def reader_batch(name: str, data: bytes):
    """What build-graph's reader yields for the file (as MPDReader.read does)."""
    try:
        data = mpd.decompress(name, data)
    except mpd.SliceError as e:
        return file_error(name, 0, e)
    return read_slice(name, 0, data)


def same_verdict(name: str, data: bytes) -> None:
    file_rule, verdicts = check_verdicts(name, data)
    batch = reader_batch(name, data)
    batch.validate(full=True)                    # the Arrow batch holds what Parquet can write
    reasons = batch.column("reason").to_pylist()
    for r in reasons:
        assert r is None or r.split(":", 1)[0] in RULES, r
    if file_rule is not None:
        assert len(reasons) == 1 and reasons[0].startswith(file_rule + ":"), (file_rule, reasons)
        assert batch.column("pid").to_pylist() == [None]
        return
    assert reasons == verdicts
    valid = [r is None for r in reasons]
    assert batch.column("num_tracks").to_pylist() == [
        len(p["tracks"]) if isinstance(p, dict) and isinstance(p.get("tracks"), list) else 0
        for p in mpd.parse_slice(mpd.decompress(name, data))]
    assert all(n > 0 for n, ok in zip(batch.column("num_tracks").to_pylist(), valid) if ok)


@given(plans())
def test_fuzzed_slices_get_the_same_verdict_from_check_and_build_graph(plan):
    name, data = corrupt(base_doc(), plan)
    same_verdict(name, data)


def test_the_reported_crashes_are_quarantined(tmp_path):
    """The three inputs that killed build-graph, and the BOM that check and build-graph judged
    differently."""
    doc = base_doc()
    huge = json.loads(json.dumps(doc))
    huge["playlists"][0]["pid"] = 2 ** 70
    cases = {
        "int_out_of_range": json.dumps(huge).encode(),
        "invalid_unicode": json.dumps(doc).replace('"name": "', '"name": "bad \\ud800 x', 1).encode(),
    }
    for rule, data in cases.items():
        same_verdict(NAME, data)
        reasons = [r for r in reader_batch(NAME, data).column("reason").to_pylist() if r]
        assert len(reasons) == 1 and reasons[0].startswith(rule + ":"), reasons
    bom = b"\xef\xbb\xbf" + json.dumps(doc).encode()
    same_verdict(NAME, bom)
    assert check_verdicts(NAME, bom) == (None, [None] * len(doc["playlists"]))
    # a folder named like a slice is ignored (and counted), not read
    (tmp_path / "mpd.slice.5000-5999.json").mkdir()
    (tmp_path / NAME).write_bytes(json.dumps(doc).encode())
    r = check(str(tmp_path), show_progress=False)
    assert r.files == 1 and r.ignored == ["mpd.slice.5000-5999.json/"] and r.ok


def test_a_spark_build_over_fuzzed_files_reconciles(spark, tmp_path):
    from conftest import build_graph

    from musicmap import storage
    rng = random.Random(2018)
    mpd_dir = tmp_path / "mpd"
    mpd_dir.mkdir()
    doc = base_doc()
    expected = Counter()
    for i in range(16):
        d = json.loads(json.dumps(doc))
        for p in d["playlists"]:
            p["pid"] += 1000 * i                       # distinct pids in every file
        name, data = corrupt(d, random_plan(rng))
        name = name.replace("0-999", f"{1000 * i}-{1000 * i + 999}")
        (mpd_dir / name).write_bytes(data)
        file_rule, verdicts = check_verdicts(name, data)
        expected.update([file_rule] if file_rule else [v.split(":", 1)[0] for v in verdicts if v])
    for i in range(2):                                 # valid files, so the graph is not empty
        d = json.loads(json.dumps(doc))
        for p in d["playlists"]:
            p["pid"] += 100_000 + 1000 * i
        (mpd_dir / f"mpd.slice.{100_000 + 1000 * i}-{100_999 + 1000 * i}.json").write_text(json.dumps(d))
    (mpd_dir / "README.md").write_text("not a slice")
    (mpd_dir / "mpd.slice.9999000-9999999.json").mkdir()
    stats = build_graph(spark, str(tmp_path), ["graph.min_playlists=1", "graph.min_tracks=1"])
    rec = stats["reconciliation"]
    assert rec["files"]["ignored"] == 2 and rec["files"]["read"] == 18
    g = storage.open_committed(str(tmp_path / "graph"))
    q = storage.read_parquet(g.path("quarantine"))
    got = Counter(q.column("rule").to_pylist())
    # the job adds only the dataset rules (duplicate pids, track-name conflicts) to check's own
    for rule in ("duplicate_pid", "track_name_conflict"):
        got.pop(rule, None)
    assert got == expected
    p = rec["playlists"]
    assert p["read"] == p["valid"] + p["quarantined"]
    assert rec["files"]["unreadable"]["files"] == sum(n for r, n in expected.items() if r in mpd.FILE_RULES)


def test_check_finds_the_slices_of_an_unzipped_mpd_and_reads_gzipped_ones(tmp_path):
    import gzip
    doc = base_doc()
    root = tmp_path / "spotify_million_playlist_dataset"
    (root / "data").mkdir(parents=True)
    (root / "src").mkdir()
    for f in ("README.md", "md5sums", "license.txt"):
        (root / f).write_text("x")
    (root / "data" / (NAME + ".gz")).write_bytes(gzip.compress(json.dumps(doc).encode()))
    r = check(str(root), show_progress=False)
    assert r.ok and r.files == 1 and r.valid_playlists == len(doc["playlists"])
    assert r.folder.endswith("/data")
    shutil.rmtree(root / "data")
    from musicmap.errors import InputError
    with pytest.raises(InputError, match="no mpd.slice"):
        check(str(root), show_progress=False)


def test_a_slice_changed_or_gone_after_listing_is_an_unreadable_file(tmp_path):
    """An object store overwritten during the job: the reader compares what it reads with the
    listing and reports the file instead of reading other data silently."""
    from musicmap.inputs import list_inputs, read_slice_file
    from musicmap.spark_jobs.datasources import MPDReader
    text = json.dumps(base_doc())
    for i in range(3):
        (tmp_path / f"mpd.slice.{1000 * i}-{1000 * i + 999}.json").write_text(text)
    reader = MPDReader({"path": str(tmp_path)})
    parts = reader.partitions()
    listed = list_inputs(str(tmp_path)).slices
    (tmp_path / "mpd.slice.0-999.json").write_text(text + " ")          # another size
    (tmp_path / "mpd.slice.1000-1999.json").unlink()                     # gone
    f = tmp_path / "mpd.slice.2000-2999.json"
    st = f.stat()
    same_size = text.replace('"version": "v1"', '"version": "v2"')
    assert len(same_size) == len(text) and same_size != text
    f.write_text(same_size)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))         # same size, rewritten later
    rules = []
    for part in parts:
        (batch,) = list(reader.read(part))
        rules.append(batch.column("reason").to_pylist()[0].split(":")[0])
    assert rules == ["changed_during_read", "vanished", "changed_during_read"]
    with pytest.raises(mpd.SliceError, match="changed_during_read"):
        read_slice_file(listed[0])
