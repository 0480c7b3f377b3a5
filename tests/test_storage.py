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
    # a rerun replaces the output cleanly: one version folder left, the new one
    again = storage.StageWriter(storage.join(root, "graph"))
    storage.write_parquet(pa.table({"x": [9]}), again.path("t", "part-0.parquet"))
    again.commit()
    assert [n for n in storage.listdir(storage.join(root, "graph")) if n.startswith("v-")] == [again.version]
    assert storage.read_parquet(storage.open_committed(storage.join(root, "graph")).path("t"))["x"].to_pylist() == [9]


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
