"""Cluster rehearsals on this machine: what a cloud run does, with real processes on loopback.

- spark-submit of the `make dist` output (musicmap-dist.zip + build_graph.py) with --master
  local[2], from an empty folder, by a Python that has the dependencies but NOT the project
  (a throwaway venv seeing the project venv's site-packages without its editable-install hook):
  the driver and every executor can only import the project from the zip;
- the same submission to a Spark standalone cluster (a master and two 1-core workers on
  127.0.0.1), whose tables must equal the local run's;
- torchrun across two "nodes" (two torchrun processes meeting through c10d rendezvous) and on one
  node (--standalone, 2 processes): same world size, same seed, deterministic, so the embeddings
  must be bit-identical.

The runs are marked slow; they skip only when Java is missing. The archive check is fast.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import JVM_QUICK, ROOT, free_port, make_bare_venv, run_cmd

BIN = Path(sys.executable).parent
JAVA = shutil.which("java") or (os.environ.get("JAVA_HOME") and
                                shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")))
# Spark needs a JVM: the Spark tests (and the training test, which trains on their graph) skip
# without one, saying so; nothing else makes them skip.
needs_java = pytest.mark.skipif(not JAVA, reason="Java is not installed (Spark needs a JVM: install "
                                                 "OpenJDK 17 or set JAVA_HOME)")
PLAYLISTS = 2000
TABLE_KEYS = {"edges": ["playlist_idx", "track_idx"], "tracks": ["track_idx"],
              "playlists": ["playlist_idx"], "eval": ["pid", "category"], "quarantine": ["file", "pid"]}


def spark_home() -> str:
    import pyspark
    return str(Path(pyspark.__file__).parent)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory) -> Path:
    """`make dist` into a temporary folder (no project package beside or above it)."""
    from musicmap.dist import ENTRY, ZIP_NAME, build
    out = tmp_path_factory.mktemp("dist")
    archive = build(out)
    assert archive == out / ZIP_NAME and (out / ENTRY).is_file()
    # Nothing beside dist/ may hold a project package, or the driver could import it from there
    # instead of the zip.
    assert not any((out.parent / p).exists() for p in ("musicmap", "spark_jobs", "conf"))
    return out


PROBE = """
import importlib.util, fsspec, numpy, pandas, pyarrow, pyspark, yaml
found = [m for m in ("musicmap", "spark_jobs", "train", "conf") if importlib.util.find_spec(m)]
assert not found, f"importable without the zip: {found}"
"""


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A Python with every dependency but not the project (conftest.make_bare_venv)."""
    python = str(make_bare_venv(tmp_path_factory.mktemp("bare-python")) / "bin" / "python")
    probe = subprocess.run([python, "-c", PROBE], env=clean_env(), cwd=Path(python).parent, capture_output=True,
                           text=True, check=False)
    assert probe.returncode == 0, f"the bare Python is not what this test needs:\n{probe.stderr}"
    return python


def clean_env(**extra) -> dict:
    """os.environ without anything that could point Python at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")}
    env.update(PYTHONNOUSERSITE="1", SPARK_LOCAL_IP="127.0.0.1", SPARK_HOME=spark_home(),
               OMP_NUM_THREADS="1", **extra)
    return env


def spark_submit(dist: Path, python: str, master: str, root: Path, mpd: Path, workdir: Path,
                 timeout: int = 600) -> subprocess.CompletedProcess:
    """spark-submit the dist archive as on a cluster: from an empty folder, PYTHONPATH unset."""
    workdir.mkdir(parents=True, exist_ok=True)
    assert not any(workdir.iterdir()), f"{workdir} must be empty"
    local = workdir.parent / f"{workdir.name}-spark-local"
    args = [str(BIN / "spark-submit"), "--master", master, "--deploy-mode", "client",
            "--driver-memory", "1g",
            "--conf", "spark.ui.showConsoleProgress=false", "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.local.dir={local}",
            "--conf", f"spark.pyspark.python={python}", "--conf", f"spark.pyspark.driver.python={python}",
            "--py-files", str(dist / "musicmap-dist.zip"),
            str(dist / "build_graph.py"), "--root", str(root), "--input", str(mpd / "mpd")]
    if master.startswith("spark://"):
        # one 1-core executor per worker; no waiting for a busy executor that caches a task's
        # input (spark.locality.wait, 3 s a task by default): it only slows this tiny job down
        args[1:1] = ["--conf", "spark.cores.max=2", "--conf", "spark.executor.cores=1",
                     "--conf", "spark.executor.memory=768m", "--conf", "spark.locality.wait=0",
                     "--conf", f"spark.executor.extraJavaOptions={JVM_QUICK}"]
    return run_cmd(args, env=clean_env(PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python),
                   cwd=workdir, timeout=timeout)


def committed_graph(root: Path) -> tuple[object, dict]:
    from musicmap import storage
    graph = storage.open_committed(str(root / "graph"))
    return graph, storage.read_json(graph.path("stats.json"))


def graph_tables(root: Path) -> dict:
    from musicmap import schemas, storage
    graph, _ = committed_graph(root)
    return {name: storage.read_parquet(graph.path(name), schema=schemas.GRAPH_TABLES[name])
            .sort_by([(k, "ascending") for k in keys]) for name, keys in TABLE_KEYS.items()}


@pytest.fixture(scope="module")
def mpd_input(tmp_path_factory) -> Path:
    """A folder holding mpd/ with 2 generated slices (one task per executor on the cluster)."""
    from musicmap import synth
    base = tmp_path_factory.mktemp("mpd-2k")
    synth.generate(str(base / "mpd"), PLAYLISTS, random_seed=11, show_progress=False)
    return base


@pytest.fixture(scope="module")
def local_run(dist_dir, bare_python, mpd_input, tmp_path_factory):
    """(root, process) of spark-submit --master local[2] with the dist archive."""
    base = tmp_path_factory.mktemp("local-run")
    t0 = time.time()
    p = spark_submit(dist_dir, bare_python, "local[2]", base / "root", mpd_input, base / "cwd")
    print(f"local[2] spark-submit: {time.time() - t0:.0f}s")
    return base / "root", p


# --------------------------------------------------------------------------- a. spark-submit local

@pytest.mark.slow
@needs_java
def test_spark_submit_dist_local(local_run, mpd_input):
    from test_build_graph import assert_terms_match, reference_graph

    from musicmap import storage
    from musicmap.config import load_config
    root, p = local_run
    assert "checks: all reconcile" in p.stdout, p.stdout[-3000:]
    graph, stats = committed_graph(root)
    rec = stats["reconciliation"]
    assert_terms_match(rec, reference_graph.build(str(mpd_input / "mpd"), load_config())["counts"])
    assert rec["playlists"]["read"] == PLAYLISTS and rec["files"]["read"] == 2
    assert graph.info["edges"] == stats["graph"]["interactions"] > 0
    assert storage.read_parquet(graph.path("edges")).num_rows == graph.info["edges"]
    # nothing was written where the job was started from
    assert not list((root.parent / "cwd").iterdir())


def test_dist_archive_contents(dist_dir, bare_python, tmp_path):
    """The zip alone gives the project (config defaults included) to a Python without it."""
    import zipfile

    from musicmap.config import load_config
    with zipfile.ZipFile(dist_dir / "musicmap-dist.zip") as z:
        names = z.namelist()
    for f in ("musicmap/conf/__init__.py", "musicmap/conf/default.yaml", "musicmap/config.py",
              "musicmap/spark_jobs/graph.py", "musicmap/spark_jobs/datasources.py", "musicmap/train/main.py"):
        assert f in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import musicmap.config, musicmap.spark_jobs.graph\n"
            "assert musicmap.config.__file__.startswith(sys.argv[1]), musicmap.config.__file__\n"
            "print(musicmap.config.load_config().graph.min_playlists)")
    p = run_cmd([bare_python, "-c", code, str(dist_dir / "musicmap-dist.zip")], env=clean_env(),
                cwd=tmp_path)
    assert p.stdout.strip() == str(load_config().graph.min_playlists)


# --------------------------------------------------------------------------- b. standalone cluster

class StandaloneCluster:
    """A Spark standalone master and `workers` 1-core workers on 127.0.0.1, each its own process
    group (spark-class runs the JVM in the foreground), stopped by stop()."""

    def __init__(self, base: Path, workers: int = 2):
        self.base, self.n = base, workers
        self.port, self.webui = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.worker_dirs = [base / f"worker{i}" for i in range(workers)]

    def _start(self, name: str, args: list[str]) -> None:
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        (self.base / "local").mkdir(exist_ok=True)
        env = clean_env(SPARK_LOG_DIR=str(self.base / "logs"), SPARK_LOCAL_DIRS=str(self.base / "local"),
                        SPARK_WORKER_DIR=str(self.base / name), SPARK_DAEMON_JAVA_OPTS=JVM_QUICK)
        with open(self.base / "logs" / f"{name}.log", "w") as log:
            proc = subprocess.Popen([str(Path(spark_home()) / "bin" / "spark-class"), *args], env=env,
                                    cwd=self.base, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append((name, proc))

    def start(self, timeout: float = 120) -> None:
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.port), "--webui-port", str(self.webui)])
        for i, wd in enumerate(self.worker_dirs):
            self._start(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", self.url,
                                       "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                                       "--webui-port", str(free_port()), "--work-dir", str(wd)])
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log(name)}")
            if self.state().get("aliveworkers") == self.n:
                return
            time.sleep(1)
        raise AssertionError(f"{self.n} workers did not register in {timeout}s: {self.state()}\n"
                             + "\n".join(self.log(n) for n, _ in self.procs))

    def state(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.webui}/json/", timeout=2) as r:
                return json.load(r)
        except OSError:
            return {}

    def log(self, name: str) -> str:
        f = self.base / "logs" / f"{name}.log"
        return f"--- {name}\n" + (f.read_text()[-3000:] if f.exists() else "(no log)")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for _, proc in self.procs:
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.time() + 15
            for _, proc in self.procs:
                try:
                    proc.wait(max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    pass
            if all(proc.poll() is not None for _, proc in self.procs):
                break


@pytest.mark.slow
@needs_java
def test_standalone_cluster_matches_local(local_run, dist_dir, bare_python, mpd_input, tmp_path):
    cluster = StandaloneCluster(tmp_path / "cluster")
    try:
        t0 = time.time()
        cluster.start()
        t1 = time.time()
        p = spark_submit(dist_dir, bare_python, cluster.url, tmp_path / "root", mpd_input, tmp_path / "cwd")
        print(f"cluster: workers up in {t1 - t0:.0f}s, spark-submit {time.time() - t1:.0f}s")
        apps = cluster.state().get("completedapps", [])
    finally:
        cluster.stop()
    assert "checks: all reconcile" in p.stdout, p.stdout[-3000:]
    assert [a["name"] for a in apps] == ["musicmap-build-graph"], apps
    # both workers ran an executor of the app, and each executor ran tasks
    for wd in cluster.worker_dirs:
        logs = list(wd.glob("app-*/*/stderr"))
        assert len(logs) == 1, f"{wd}: expected one executor, found {logs}"
        assert "Running task" in logs[0].read_text(), f"{logs[0]}: the executor ran no task"
    _, local_stats = committed_graph(local_run[0])
    _, stats = committed_graph(tmp_path / "root")
    for key in ("graph", "reconciliation", "filters"):   # the local run's terms were checked one by one
        assert stats.get(key) == local_stats.get(key), key
    local_tables, tables = graph_tables(local_run[0]), graph_tables(tmp_path / "root")
    for name in TABLE_KEYS:
        assert tables[name].num_rows == local_tables[name].num_rows, name
        assert tables[name].equals(local_tables[name]), f"{name} differs between cluster and local run"


# --------------------------------------------------------------------------- c. torchrun, 2 nodes vs 1

TRAIN_SETTINGS = ["train.epochs=2", "train.batch_size=4096", "train.val_max_cases=200",
                  "train.deterministic=true", "train.device=cpu", "train.progress=false"]


def _train_args(root: Path, model: Path) -> list[str]:
    args = [str(ROOT / "train" / "main.py"), "--root", str(root), "--set", f"paths.model={model}"]
    for s in TRAIN_SETTINGS:
        args += ["--set", s]
    return args


def _wait_all(procs: list[subprocess.Popen], logs: list[Path], timeout: float) -> None:
    deadline = time.time() + timeout
    try:
        for p in procs:
            p.wait(max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    bad = [(p.returncode, log) for p, log in zip(procs, logs) if p.returncode != 0]
    assert not bad, "\n".join(f"--- exit {rc}: {log}\n{log.read_text()[-4000:]}" for rc, log in bad)


def _torchrun(tag: str, torchrun_args: list[str], root: Path, model: Path, cwd: Path) -> subprocess.Popen:
    log = cwd / f"{tag}.log"
    with open(log, "w") as f:
        return subprocess.Popen([str(BIN / "torchrun"), *torchrun_args, *_train_args(root, model)],
                                env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=cwd, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
@needs_java
def test_torchrun_two_nodes_equals_one_node(local_run, tmp_path):
    from musicmap.train.export import load_model
    root = local_run[0]
    two, one = tmp_path / "model-2nodes", tmp_path / "model-1node"
    port = free_port()
    node = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id=mm-{port}", "--max_restarts=0"]
    t0 = time.time()
    procs = [_torchrun(f"node{i}", node, root, two, tmp_path) for i in range(2)]
    _wait_all(procs, [tmp_path / "node0.log", tmp_path / "node1.log"], timeout=300)
    t1 = time.time()
    single = ["--standalone", "--nproc_per_node=2", "--max_restarts=0"]
    p = _torchrun("standalone", single, root, one, tmp_path)
    _wait_all([p], [tmp_path / "standalone.log"], timeout=300)
    print(f"torchrun: 2 nodes x 1 process {t1 - t0:.0f}s, 1 node x 2 processes {time.time() - t1:.0f}s")

    a, b = load_model(str(two)), load_model(str(one))
    for m in (a, b):
        assert m.manifest["world_size"] == 2 and m.manifest["epochs_run"] == 2
        assert len(set(m.manifest["rank_param_digests"])) == 1, "ranks ended with different weights"
    assert a.tracks.shape == b.tracks.shape and a.playlists.shape == b.playlists.shape
    np.testing.assert_array_equal(a.tracks, b.tracks)
    np.testing.assert_array_equal(a.playlists, b.playlists)
    np.testing.assert_array_equal(a.foldin, b.foldin)
    assert a.manifest["best"] == b.manifest["best"]
