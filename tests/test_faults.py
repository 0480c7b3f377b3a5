"""Faults a user meets on a cluster: a stage killed while it writes, a killed training rank, a
flaky or misconfigured object store, secrets in the environment and config, untrusted files."""
from __future__ import annotations

import http.client
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TRAIN_SETTINGS, build_graph, free_port, make_bucket, musicmap, run_cmd

from musicmap import storage
from musicmap.distributed import FRESH_STORE_ENV
from musicmap.train import checkpoint
from musicmap.train.export import load_model

PY_ENV = {"PYTHONUNBUFFERED": "1"}


def _popen(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable if a == "python" else a for a in args], cwd=ROOT,
                            env=dict(os.environ, **PY_ENV, **(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(pred, timeout: float, proc: subprocess.Popen | None = None, every: float = 0.02) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(pred())
        time.sleep(every)
    return False


PAUSE_HOOK = ROOT / "tests" / "hooks"


def _paused(pattern: str, marker: Path) -> dict:
    """The environment of a stage that hangs right after it writes a file matching pattern
    (tests/hooks/sitecustomize.py): a kill is then exactly mid-write, on any machine."""
    path = os.pathsep.join([str(PAUSE_HOOK), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, "MUSICMAP_PAUSE_AFTER": pattern, "MUSICMAP_PAUSE_MARKER": str(marker)}


def _versions(uri: Path) -> list[str]:
    return sorted(p.name for p in uri.glob("v-*")) if uri.exists() else []


# ------------------------------------------------------------------------------ atomic stages

@pytest.mark.slow
def test_build_graph_killed_while_writing_leaves_the_previous_output(graph_small, spark, tmp_path):
    src, _ = graph_small
    root = tmp_path / "root"
    shutil.copytree(src / "mpd", root / "mpd")
    shutil.copytree(src / "graph", root / "graph")
    before = storage.open_committed(str(root / "graph"))
    old = {n: storage.read_parquet(before.path(n)).num_rows for n in ("edges", "tracks", "playlists")}
    marker = tmp_path / "paused"
    proc = _popen(["python", "-m", "musicmap.cli", "build-graph", "--root", str(root)],
                  _paused("*/edges/part-*.parquet", marker))
    try:
        assert _wait_for(marker.exists, 300, proc, every=0.1), \
            f"build-graph never wrote an edge file:\n{proc.stdout.read() if proc.poll() is not None else ''}"
        os.killpg(proc.pid, signal.SIGKILL)                # while it writes the edge table
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert len(_versions(root / "graph")) == 2                  # the killed run's partial folder ...
    after = storage.open_committed(str(root / "graph"))          # ... is not what readers see
    assert after.version == before.version
    assert {n: storage.read_parquet(after.path(n)).num_rows for n in old} == old
    partial = set(_versions(root / "graph")) - {before.version}
    # a rerun commits; the previous version stays for a reader that holds it (storage.keep_versions
    # 2), and the killed run's folder goes: the rerun committed over its base, so it never can.
    # (The rerun is the job's build function in this test process's Spark session.)
    build_graph(spark, str(root))
    now = storage.open_committed(str(root / "graph")).version
    assert now != before.version and set(_versions(root / "graph")) == {before.version, now}
    assert partial and not partial & set(_versions(root / "graph"))


@pytest.mark.slow
def test_trainer_killed_while_writing_leaves_the_previous_model(trained_small, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(trained_small / "graph", root / "graph")
    shutil.copytree(trained_small / "model", root / "model")
    before = load_model(str(root / "model"))
    args = ["python", str(ROOT / "train" / "main.py"), "--root", str(root)]
    for o in [*TRAIN_SETTINGS, "train.epochs=1", "train.resume=false"]:
        args += ["--set", o]
    marker = tmp_path / "paused"
    proc = _popen(args, _paused("*/track_embeddings.npy", marker))
    try:
        started = _wait_for(marker.exists, 300, proc, every=0.1)
        os.killpg(proc.pid, signal.SIGKILL)                # after one of its output files
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert started, "the trainer never wrote its embeddings"
    assert any((root / "model" / v / "playlist_embeddings.npy").exists()
               for v in _versions(root / "model") if v != before.version)   # a partial version ...
    after = load_model(str(root / "model"))
    assert after.version == before.version
    np.testing.assert_array_equal(after.tracks, before.tracks)


def _rank_pids(parent: int) -> dict[int, int]:
    """{local rank: pid} of the worker processes torchrun (pid `parent`) started."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            env = dict(kv.split("=", 1) for kv in (d / "environ").read_text().split("\0") if "=" in kv)
        except (OSError, ValueError, IndexError):
            continue
        if "LOCAL_RANK" in env:
            out[int(env["LOCAL_RANK"])] = int(d.name)
    return out


# many steps per epoch (a mid-epoch kill); ranks that cannot connect fail within a minute
KILLED_RANK_SETTINGS = [*TRAIN_SETTINGS, "train.batch_size=512", "train.dist_timeout_s=60", "train.epochs=3"]


@pytest.fixture(scope="module")
def uninterrupted(trained_small, tmp_path_factory):
    """The killed-rank tests' run without a kill (one for both ways of keeping the store)."""
    clean = tmp_path_factory.mktemp("uninterrupted")
    shutil.copytree(trained_small / "graph", clean / "graph")
    cmd = ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train" / "main.py"), "--root", str(clean)]
    for o in KILLED_RANK_SETTINGS:
        cmd += ["--set", o]
    run_cmd(cmd)
    return load_model(str(clean / "model"))


@pytest.mark.slow
@pytest.mark.parametrize("store", ["agent", "fresh"])
def test_a_killed_rank_resumes_from_the_checkpoint(trained_small, uninterrupted, tmp_path, monkeypatch, store):
    """SIGKILL rank 1 in the middle of epoch 2 under torchrun --max-restarts=1: the job restarts,
    resumes from the epoch-1 checkpoint and ends like an uninterrupted run. Both ways torchrun
    keeps its store: one store for all attempts (its default; the ranks meet under an attempt
    prefix) and a fresh one per attempt (FRESH_STORE_ENV, as `musicmap train` and the image set)."""
    root = tmp_path / "root"
    shutil.copytree(trained_small / "graph", root / "graph")
    args = ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "--max-restarts=1", str(ROOT / "train" / "main.py"), "--root", str(root)]
    for o in KILLED_RANK_SETTINGS:
        args += ["--set", o]
    for k in FRESH_STORE_ENV:
        monkeypatch.delenv(k, raising=False)
    proc = _popen(args, dict(FRESH_STORE_ENV) if store == "fresh" else None)
    try:
        ckpt = root / "model" / "checkpoints" / "epoch-0001.pt"
        assert _wait_for(ckpt.exists, 300, proc), "no epoch-1 checkpoint"
        ranks = _rank_pids(proc.pid)                       # the event: epoch 1 is saved, so the
        assert set(ranks) == {0, 1}, ranks                 # kill lands after it, whatever the speed
        os.kill(ranks[1], signal.SIGKILL)
        saved = sorted(int(f.stem.split("-")[1]) for f in (root / "model" / "checkpoints").glob("epoch-*.pt"))
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-4000:]
    resumed = [int(m) for m in re.findall(r"resumed from checkpoint epoch (\d+)", out)]
    assert resumed and resumed[0] >= 1 and resumed[0] in saved + [saved[-1] + 1], (resumed, saved)
    killed = load_model(str(root / "model"))
    assert killed.manifest["epochs_run"] == 3
    # the same run without a kill
    assert abs(killed.manifest["best"]["ndcg"] - uninterrupted.manifest["best"]["ndcg"]) < 0.01
    # with deterministic settings the resumed run is in fact the same run
    np.testing.assert_allclose(killed.tracks, uninterrupted.tracks, atol=1e-5)


# ------------------------------------------------------------------------------ storage faults

class _FlakyProxy(BaseHTTPRequestHandler):
    """Forwards to the S3 server, but answers every third request with 503 SlowDown."""
    protocol_version = "HTTP/1.1"   # answers botocore's Expect: 100-continue
    upstream = ""
    counter = 0
    failed = 0
    lock = threading.Lock()

    def _handle(self):
        with _FlakyProxy.lock:
            _FlakyProxy.counter += 1
            fail = _FlakyProxy.counter % 3 == 0
            _FlakyProxy.failed += fail
        body = self._body()
        if fail:
            msg = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        host, port = self.upstream.split("//", 1)[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("expect", "transfer-encoding", "content-length")}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        status, headers, data = resp.status, resp.headers, resp.read()
        conn.close()
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", headers.get("Content-Length", "0") if self.command == "HEAD"
                         else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = b""
        while True:  # HTTP/1.1 chunked upload (botocore streams bodies with checksum trailers)
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, *a):
        pass


def test_transient_errors_are_retried(s3_server):
    make_bucket("mm-flaky")
    _FlakyProxy.upstream = s3_server
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _FlakyProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        storage.configure(s3_endpoint_url=f"http://127.0.0.1:{server.server_address[1]}", retry_backoff_s=0.01)
        for i in range(10):
            storage.write_bytes(f"s3://mm-flaky/x/{i}.bin", bytes([i]) * 100)
        assert [storage.read_bytes(f"s3://mm-flaky/x/{i}.bin") for i in range(10)] == \
            [bytes([i]) * 100 for i in range(10)]
        assert len(storage.listdir("s3://mm-flaky/x")) == 10
        assert _FlakyProxy.failed >= 5
    finally:
        server.shutdown()
        storage.configure()


def test_our_retry_backs_off_then_gives_up_on_a_permanent_error():
    calls = []

    def flaky():
        calls.append(time.time())
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer")
        return "ok"
    storage.configure(retries=4, retry_backoff_s=0.05)
    try:
        assert storage.call("s3://b/k", flaky, "read") == "ok"
        assert len(calls) == 3
        assert calls[1] - calls[0] >= 0.02 and calls[2] - calls[1] >= 0.045   # 0.05 s, then doubled
        denied = []

        def forbidden():
            denied.append(1)
            raise PermissionError("Access Denied")
        with pytest.raises(storage.StorageError, match="access denied"):
            storage.call("s3://b/k", forbidden)
        assert len(denied) == 1                       # a permanent error is not retried
    finally:
        storage.configure()


@pytest.fixture(scope="module")
def auth_s3():
    """A second S3 server that checks credentials: the first 3 calls (bucket, user, key) are free."""
    port = free_port()
    moto_server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
                            env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        assert _wait_for(lambda: _port_open(port), 30)
        import boto3
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing")
        boto3.client("s3", **kw).create_bucket(Bucket="mm-locked")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        proc.kill()
        proc.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in p.stderr, p.stderr
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_missing_bucket_is_a_one_line_error(s3_server, tmp_path):
    p = musicmap("check", "s3://no-such-bucket-here/mm/mpd", check=False)
    _one_line_error(p, "s3://no-such-bucket-here/mm/mpd", "bucket does not exist")
    p = musicmap("train", "--root", "s3://no-such-bucket-here/mm", check=False)
    _one_line_error(p, "s3://no-such-bucket-here/mm/graph", "bucket does not exist")


def test_missing_credentials_is_a_one_line_error(s3_server, tmp_path):
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    p = musicmap("check", "s3://mm-anything/mpd", env=env, check=False)
    _one_line_error(p, "s3://mm-anything/mpd", "no cloud credentials", "AWS_ACCESS_KEY_ID")


def test_denied_access_and_bad_keys_are_one_line_errors(auth_s3):
    endpoint, key_id, secret = auth_s3
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
    p = musicmap("check", "s3://mm-locked/mpd", env=env, check=False)
    line = _one_line_error(p, "s3://mm-locked/mpd", "access denied")
    assert secret not in line
    env["AWS_ACCESS_KEY_ID"] = "AKIAUNKNOWNUNKNOWN00"
    p = musicmap("check", "s3://mm-locked/mpd", env=env, check=False)
    _one_line_error(p, "s3://mm-locked/mpd")


# ------------------------------------------------------------------------------ secrets

PLANTED_ENV = "wJalrXUtnFEMI/K7MDENG/PLANTEDenvSECRET01"
PLANTED_CFG = "PLANTEDcfgSECRET/K7MDENG+bPxRfiCYzz02"


@pytest.mark.slow
def test_no_secret_is_printed_logged_or_written(graph_small, s3_server, tmp_path):
    """A planted secret in the environment and one in the config: neither appears in any output,
    log line or file the stages write, on success or on error."""
    src, _ = graph_small
    root = tmp_path / "root"
    shutil.copytree(src / "mpd", root / "mpd")
    shutil.copytree(src / "graph", root / "graph")
    env = {"MUSICMAP_SECRET": PLANTED_ENV, "AWS_SESSION_TOKEN": PLANTED_ENV}
    cfg = ["--set", f"storage.s3_secret_access_key={PLANTED_CFG}", "--set", "storage.s3_access_key_id=testing"]
    outputs = []
    outputs.append(musicmap("train", "--root", str(root), "--nproc", "2", *cfg,
                            *sum((["--set", o] for o in TRAIN_SETTINGS + ["train.epochs=1"]), []), env=env))
    outputs.append(musicmap("recommend", "--root", str(root), "--playlists", "test", *cfg, env=env))
    outputs.append(musicmap("evaluate", "--root", str(root), *cfg, env=env))
    outputs.append(musicmap("check", "s3://no-such-bucket-here/mpd", *cfg, env=env, check=False))
    outputs.append(musicmap("train", "--root", "s3://no-such-bucket-here/mm", *cfg, env=env, check=False))
    outputs.append(musicmap("train", "--root", str(root), "--set", "train.epoch=2", *cfg, env=env, check=False))
    for p in outputs:
        for secret in (PLANTED_ENV, PLANTED_CFG):
            assert secret not in p.stdout and secret not in p.stderr
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for secret in (PLANTED_ENV, PLANTED_CFG):
                assert secret.encode() not in data, f
    manifest = load_model(str(root / "model")).manifest
    assert manifest["config"]["storage"]["s3_secret_access_key"] == "***"


# ------------------------------------------------------------------------------ untrusted files

class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/musicmap-pwned",))


def test_a_pickled_checkpoint_is_refused_not_executed(tmp_path):
    Path("/tmp/musicmap-pwned").unlink(missing_ok=True)
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    import torch
    buf = io.BytesIO()
    torch.save({"fingerprint": "x", "evil": _Evil()}, buf)
    (ckpt / "epoch-0001.pt").write_bytes(buf.getvalue())
    assert checkpoint.load_latest(str(ckpt), "x") is None
    assert not Path("/tmp/musicmap-pwned").exists()


def _call_args(text: str, start: int) -> str:
    """The argument text of a call whose opening parenthesis ends at `start`."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def test_no_pickle_on_any_path_that_reads_files():
    """Static check: user files are read with json, pyarrow, numpy (allow_pickle=False) and
    torch.load(weights_only=True) only."""
    for f in [*ROOT.glob("musicmap/**/*.py"), *ROOT.glob("spark_jobs/*.py"), *ROOT.glob("train/*.py")]:
        text = f.read_text()
        assert not re.search(r"\bpickle\.loads?\(|\bcloudpickle\b|\bdill\b|\bjoblib\.load", text), f
        for call, needed in (("torch.load(", "weights_only=True"), ("np.load(", "allow_pickle=False")):
            for m in re.finditer(re.escape(call), text):
                args = _call_args(text, m.end())
                assert needed in args, (f, call + args)
        assert "allow_pickle=True" not in text, f
