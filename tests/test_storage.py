"""Storage: atomic stage commits, readers that refuse uncommitted output, and the same calls on a
real S3 server (moto, loopback)."""
from __future__ import annotations

import shutil
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_bucket
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

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
    fails saying so, and its folder (it can never commit) goes."""
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
    assert not storage.exists(storage.join(uri, b.version, "part-2"))   # the loser's folder went


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


# ------------------------------------------------------------------ commits under any interleaving

def _parts(uri: str, version: str) -> list[str]:
    return [n for n in storage.listdir(storage.join(uri, version)) if n.startswith("part-")]


def _overlapping_run_cannot_commit_a_removed_folder(root: str, keep: int) -> None:
    """Run X starts from a committed version; runs W and Y commit meanwhile (their prunes remove X's folder: X can never
    commit); X writes one more part and commits: it fails, and the newest output stays Y's."""
    uri = storage.join(root, "graph")
    storage.StageWriter(uri, keep=keep).commit()                             # the version X starts from
    x = storage.StageWriter(uri, keep=keep)
    storage.write_bytes(x.path("part-0"), b"x")
    for _ in ("W", "Y"):
        w = storage.StageWriter(uri, keep=keep)
        storage.write_bytes(w.path("part-0"), w.version.encode())
        storage.write_bytes(w.path("part-1"), w.version.encode())
        last = w.commit()
    assert not storage.exists(storage.join(uri, x.version, "part-0"))      # X's folder went ...
    storage.write_bytes(x.path("part-1"), b"x")                              # ... X writes on
    with pytest.raises(storage.CommitConflict, match="another run committed"):
        x.commit()
    now = storage.open_committed(uri)
    assert now.version == last["version"] and _parts(uri, now.version) == ["part-0", "part-1"]


def test_an_overlapping_run_never_commits_over_newer_versions(tmp_path):
    for keep in (1, 2):
        _overlapping_run_cannot_commit_a_removed_folder(str(tmp_path / f"keep{keep}"), keep)


def test_a_run_whose_folder_was_deleted_by_hand_does_not_commit(tmp_path):
    """No other run claimed its base, but its folder is gone (deleted by hand, a disk cleanup):
    committing would name a version with no files, so it fails and the previous one stays."""
    uri = str(tmp_path / "graph")
    first = storage.StageWriter(uri).commit()
    x = storage.StageWriter(uri)
    storage.write_bytes(x.path("part-0"), b"x")
    shutil.rmtree(tmp_path / "graph" / x.version)
    with pytest.raises(storage.CommitConflict, match="was removed while it wrote"):
        x.commit()
    assert storage.open_committed(uri).version == first["version"]


def test_on_s3_an_overlapping_run_never_commits_over_newer_versions(s3_server):
    make_bucket("mm-overlap")
    storage.configure()
    for keep in (1, 2):
        _overlapping_run_cannot_commit_a_removed_folder(f"s3://mm-overlap/keep{keep}", keep)


def _failed_marker_write_does_not_block_the_stage(root: str, monkeypatch) -> None:
    """A commit whose marker write fails after its claim: the claim committed it (readers see it),
    and the next run commits over it instead of failing for good."""
    uri = storage.join(root, "graph")
    storage.StageWriter(uri).commit()
    w = storage.StageWriter(uri)
    storage.write_bytes(w.path("part-0"), b"w")
    real = storage.write_json

    def failing(target, obj):
        if target.endswith(storage.SUCCESS):
            raise OSError(28, "No space left on device")
        return real(target, obj)
    monkeypatch.setattr(storage, "write_json", failing)
    w.commit()
    monkeypatch.setattr(storage, "write_json", real)
    assert storage.open_committed(uri).version == w.version
    nxt = storage.StageWriter(uri)
    assert nxt.base["version"] == w.version
    nxt.commit()
    assert storage.open_committed(uri).version == nxt.version
    assert storage.read_json(storage.join(uri, storage.SUCCESS))["version"] == nxt.version


def test_a_failed_marker_write_leaves_the_stage_usable(tmp_path, monkeypatch):
    _failed_marker_write_does_not_block_the_stage(str(tmp_path), monkeypatch)


def test_on_s3_a_failed_marker_write_leaves_the_stage_usable(s3_server, monkeypatch):
    make_bucket("mm-marker")
    storage.configure(retry_backoff_s=0.01)
    _failed_marker_write_does_not_block_the_stage("s3://mm-marker/r", monkeypatch)


def test_on_s3_a_claim_whose_put_response_was_lost_is_recognised_as_its_own(s3_server, monkeypatch):
    """The conditional PUT of the claim succeeds but its response times out: the retry gets 412,
    and the run reads the claim back and finds its own version (not a conflict with itself)."""
    make_bucket("mm-lost")
    storage.configure(retry_backoff_s=0.01)
    uri = "s3://mm-lost/graph"
    storage.StageWriter(uri).commit()
    w = storage.StageWriter(uri)
    fs, _ = storage.get_fs(uri)
    real, lost = fs.pipe_file, []

    def put(path, data, **kw):
        real(path, data, **kw)
        if "/_claims/" in path and not lost:
            lost.append(path)
            raise TimeoutError("read timed out")      # the write landed; its answer did not
    monkeypatch.setattr(fs, "pipe_file", put)
    w.commit()
    assert lost and storage.open_committed(uri).version == w.version


class Killed(BaseException):
    """A process killed at this point (no except clause of the code under test catches it)."""


class CommitMachine(RuleBasedStateMachine):
    """Random interleavings of runs of one stage (start, write a part, commit, die before or in
    the middle of a commit, open a reader) against a model: the committed versions form one
    chain; a run commits exactly when nothing was committed since it started; readers see the
    newest commit with exactly its writer's parts; the newest `keep` versions stay whole; after a
    commit no folder of a run that can no longer commit remains."""
    root = None      # set by the test: a folder or an S3 prefix

    def __init__(self):
        super().__init__()
        self.uri = storage.join(self.root, uuid.uuid4().hex[:8], "stage")
        self.chain: list[tuple[str, list[str]]] = []    # committed (version, parts), oldest first
        self.runs: dict[str, dict] = {}                  # started, not yet ended
        self.readers: list[tuple[storage.Committed, int]] = []

    @initialize(keep=st.sampled_from([1, 2, 3]))
    def choose_keep(self, keep):
        self.keep = keep

    def _head(self):
        return self.chain[-1][0] if self.chain else None

    @rule()
    def start(self):
        w = storage.StageWriter(self.uri, keep=self.keep)
        assert (w.base or {}).get("version") == self._head()
        self.runs[w.version] = {"w": w, "base": self._head(), "parts": []}

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def write(self, data):
        run = self.runs[data.draw(st.sampled_from(sorted(self.runs)))]
        name = f"part-{len(run['parts'])}"
        storage.write_bytes(run["w"].path(name), (run["w"].version + name).encode())
        run["parts"].append(name)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), killed=st.booleans())
    def commit(self, data, killed):
        version = data.draw(st.sampled_from(sorted(self.runs)))
        run = self.runs.pop(version)
        wins = run["base"] == self._head()
        real = storage.write_json

        def marker(target, obj):
            if target.endswith(storage.SUCCESS):
                raise Killed()
            return real(target, obj)
        storage.write_json = marker if killed else real
        try:
            run["w"].commit()
            won = True
        except Killed:
            won = True                      # died after its claim: the claim is the commit
        except storage.CommitConflict:
            won = False
        finally:
            storage.write_json = real
        assert won == wins
        if won:
            self.chain.append((version, run["parts"]))
        if won and not killed:
            started = {n for n in storage.listdir(self.uri) if n.startswith(storage.VERSION_PREFIX)
                       and storage.exists(storage.join(self.uri, n, storage.WRITER))}
            assert started == {v for v, _ in self.chain[-self.keep:]}

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def die(self, data):
        self.runs.pop(data.draw(st.sampled_from(sorted(self.runs))))

    @rule()
    def open_reader(self):
        if not self.chain:
            with pytest.raises(storage.NotCommittedError):
                storage.open_committed(self.uri)
            return
        c = storage.open_committed(self.uri)
        assert c.version == self._head()
        self.readers.append((c, len(self.chain) - 1))

    @invariant()
    def newest_versions_are_whole(self):
        for version, parts in self.chain[-self.keep:]:
            assert _parts(self.uri, version) == parts
            for name in parts:
                assert storage.read_bytes(storage.join(self.uri, version, name)) == (version + name).encode()
        for c, at in self.readers:
            if at >= len(self.chain) - self.keep:           # a reader of a kept version reads it whole
                assert _parts(self.uri, c.version) == self.chain[at][1]


def test_commits_hold_under_random_interleavings(tmp_path):
    CommitMachine.root = str(tmp_path)
    run_state_machine_as_test(CommitMachine, settings=settings(max_examples=40, stateful_step_count=30,
                                                               deadline=None))


def test_on_s3_commits_hold_under_random_interleavings(s3_server):
    make_bucket("mm-machine")
    storage.configure(retry_backoff_s=0.01)
    CommitMachine.root = "s3://mm-machine"
    run_state_machine_as_test(CommitMachine, settings=settings(max_examples=8, stateful_step_count=20,
                                                               deadline=None))


def test_a_filtered_read_decodes_a_batch_at_a_time_and_keeps_only_matching_rows(tmp_path, monkeypatch):
    """read_parquet with filters: the rows pyarrow's own filtered read gives, in the schema asked
    for, but decoded FILTER_BATCH rows at a time (at the MPD's size the graph's eval file is one
    row group of GBs, and every rank of a job reads it)."""
    schema = pa.schema([("pid", pa.int64()), ("split", pa.string()), ("seeds", pa.list_(pa.string()))])
    n = 1000
    rng = np.random.default_rng(0)
    t = pa.table({"pid": rng.permutation(n), "split": rng.choice(["val", "test"], n),
                  "seeds": [[f"t{i}"] * (i % 3) for i in range(n)]}, schema=schema)
    (tmp_path / "eval").mkdir()
    pq.write_table(t, tmp_path / "eval" / "part-0.parquet", row_group_size=n)        # one row group
    pq.write_table(t.slice(0, 10), tmp_path / "eval" / "part-1.parquet")
    wanted = [("split", "=", "val"), ("pid", "in", list(range(0, n, 7)))]
    seen, real = [], pq.ParquetFile.iter_batches

    def spy(self, batch_size, **kw):
        for b in real(self, batch_size, **kw):
            seen.append(b.num_rows)
            yield b
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    monkeypatch.setattr(storage, "FILTER_BATCH", 64)
    got = storage.read_parquet(str(tmp_path / "eval"), columns=["pid", "seeds"], schema=schema, filters=wanted)
    monkeypatch.undo()
    ref = pa.concat_tables([pq.read_table(tmp_path / "eval" / f, columns=["pid", "seeds"], filters=wanted)
                            for f in ("part-0.parquet", "part-1.parquet")])
    assert got.schema == schema.remove(1) and got.num_rows == ref.num_rows > 0
    assert got.to_pylist() == ref.to_pylist()
    assert seen and max(seen) <= 64 and sum(seen) == n + 10   # every row was read, 64 at a time
    none = storage.read_parquet(str(tmp_path / "eval"), schema=schema, filters=[("pid", "=", -1)])
    assert none.num_rows == 0 and none.schema == schema
