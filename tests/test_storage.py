"""Storage: atomic stage commits, readers that refuse uncommitted output, and the same calls on a
real S3 server (moto, loopback)."""
from __future__ import annotations

import pyarrow as pa
import pytest

from conftest import make_bucket
from musicmap import storage


def _roundtrip(root: str) -> None:
    out = storage.StageWriter(storage.join(root, "graph"))
    storage.write_parquet(pa.table({"x": [1, 2, 3]}), out.path("t", "part-0.parquet"))
    with pytest.raises(storage.NotCommittedError, match="run `musicmap build-graph` first"):
        storage.open_committed(storage.join(root, "graph"), "build-graph")
    marker = out.commit({"rows": 3})
    got = storage.open_committed(storage.join(root, "graph"))
    assert got.version == out.version == marker["version"] and got.info["rows"] == 3
    assert storage.read_parquet(got.path("t"))["x"].to_pylist() == [1, 2, 3]
    # a rerun commits a new version and keeps the previous one (storage.keep_versions 2) for
    # readers that hold it; the next rerun removes the oldest
    again = storage.StageWriter(storage.join(root, "graph"))
    storage.write_parquet(pa.table({"x": [9]}), again.path("t", "part-0.parquet"))
    again.commit()
    assert versions(root) == [out.version, again.version]
    assert storage.read_parquet(storage.open_committed(storage.join(root, "graph")).path("t"))["x"].to_pylist() == [9]
    third = storage.StageWriter(storage.join(root, "graph"))
    storage.write_parquet(pa.table({"x": [7]}), third.path("t", "part-0.parquet"))
    assert third.commit()["history"] == [third.version, again.version]
    assert versions(root) == [again.version, third.version]


def versions(root: str) -> list[str]:
    return [n for n in storage.listdir(storage.join(root, "graph")) if n.startswith("v-")]


def test_local_commit_and_refusal(tmp_path):
    _roundtrip(str(tmp_path))
    _roundtrip(f"file://{tmp_path}/viaurl")


def test_unfinished_output_is_refused_with_a_clear_message(tmp_path):
    out = storage.StageWriter(str(tmp_path / "model"))
    storage.write_bytes(out.path("track_embeddings.npy"), b"partial")
    with pytest.raises(storage.NotCommittedError, match="unfinished or killed run"):
        storage.open_committed(str(tmp_path / "model"), "train")


def test_write_bytes_is_atomic_locally(tmp_path):
    target = tmp_path / "a" / "f.json"
    storage.write_json(str(target), {"a": 1})
    storage.write_json(str(target), {"a": 2})
    assert storage.read_json(str(target)) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]  # no temporary left


def test_s3_commit_and_refusal(s3_server):
    make_bucket("mm-storage")
    storage.configure()
    _roundtrip("s3://mm-storage/root")


def test_s3_missing_bucket_is_one_line(s3_server):
    storage.configure()
    with pytest.raises(storage.StorageError, match=r"s3://no-such-bucket/x/_SUCCESS: bucket does not exist"):
        storage.write_json("s3://no-such-bucket/x/_SUCCESS", {})


def _reader_finishes_its_version(root: str) -> None:
    """A reader holding the committed version reads it to the end while a new commit lands."""
    first = storage.StageWriter(storage.join(root, "graph"))
    for i in range(3):
        storage.write_parquet(pa.table({"x": [i]}), first.path("t", f"part-{i}.parquet"))
    first.commit()
    held = storage.open_committed(storage.join(root, "graph"))
    got = [storage.read_parquet(held.path("t", "part-0.parquet"))["x"][0].as_py()]
    rerun = storage.StageWriter(storage.join(root, "graph"))          # build-graph reruns meanwhile
    storage.write_parquet(pa.table({"x": [9]}), rerun.path("t", "part-0.parquet"))
    rerun.commit()
    got += [storage.read_parquet(held.path("t", f"part-{i}.parquet"))["x"][0].as_py() for i in (1, 2)]
    assert got == [0, 1, 2] and storage.open_committed(storage.join(root, "graph")).version == rerun.version


def _two_writers_race(root: str) -> None:
    """Two runs of one stage from the same committed version: the first to commit wins, the other
    fails saying so, and neither removes the other's files."""
    uri = storage.join(root, "graph")
    base = storage.StageWriter(uri)
    storage.write_bytes(base.path("a.txt"), b"base")
    base.commit()
    a, b = storage.StageWriter(uri), storage.StageWriter(uri)
    for w in (a, b):
        for i in range(3):
            storage.write_bytes(w.path(f"part-{i}"), w.version.encode())
    a.commit({"rows": 3})
    with pytest.raises(storage.CommitConflict, match=f"another run committed {a.version} while this one wrote {b.version}"):
        b.commit({"rows": 3})
    c = storage.open_committed(uri)
    assert c.version == a.version and c.info["rows"] == 3
    assert [storage.read_bytes(c.path(f"part-{i}")) for i in range(3)] == [a.version.encode()] * 3
    assert storage.exists(storage.join(uri, b.version, "part-2"))   # the loser's files are its own


def test_a_reader_finishes_its_version_and_racing_writers_have_one_winner(tmp_path):
    _reader_finishes_its_version(str(tmp_path / "r"))
    _two_writers_race(str(tmp_path / "w"))
    # four writers committing at once from the same base: exactly one wins
    import threading
    uri = str(tmp_path / "many" / "graph")
    storage.StageWriter(uri).commit()
    writers = [storage.StageWriter(uri) for _ in range(4)]
    results = []

    def commit(w):
        try:
            w.commit()
            results.append("won")
        except storage.CommitConflict:
            results.append("lost")
    threads = [threading.Thread(target=commit, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost"] * 3 + ["won"]


def test_on_s3_a_reader_finishes_its_version_and_racing_writers_have_one_winner(s3_server):
    make_bucket("mm-versions")
    storage.configure()
    _reader_finishes_its_version("s3://mm-versions/r")
    _two_writers_race("s3://mm-versions/w")


def test_a_missing_key_is_not_retried_whatever_its_name(s3_server, caplog):
    """Transient means a status or an error code, never words of a message: the MPD's own file
    names hold "503" and "500"."""
    import time
    make_bucket("mm-names")
    storage.configure(retries=5, retry_backoff_s=0.5)
    for key in ("mpd.slice.503000-503999.json", "mpd.slice.500000-500999.json", "mpd.slice.0-999.json"):
        t0 = time.time()
        with pytest.raises(storage.NotFoundError):
            storage.read_bytes(f"s3://mm-names/mpd/{key}")
        assert time.time() - t0 < 1.0, key
    assert "transient" not in caplog.text


def test_transient_errors_by_status_and_code_not_by_message():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def client_error(code, status, message):
        return ClientError({"Error": {"Code": code, "Message": message},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
    assert storage._is_transient(client_error("SlowDown", 503, "Please reduce your request rate"))
    assert storage._is_transient(client_error("InternalError", 500, "We encountered an internal error"))
    assert not storage._is_transient(client_error("NoSuchKey", 404, "mpd.slice.503000-503999.json: 500 Internal"))
    wrapped = FileNotFoundError("mpd.slice.503000-503999.json")
    wrapped.__cause__ = client_error("NoSuchKey", 404, "503")
    assert not storage._is_transient(wrapped)
    retried = OSError("mpd.slice.0-999.json")
    retried.__cause__ = client_error("ServiceUnavailable", 503, "")
    assert storage._is_transient(retried)
    assert storage._is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
