"""Shared fixtures: real components only (local Spark, torchrun processes, a loopback S3 server).

Expensive things are built once per test run and shared (session scope; the data ones once for
all test processes, see built_once):
    spark        one local Spark session (start-up is ~7 s)
    mpd_small    a generated MPD of 3,000 playlists (3 slices) with a challenge set
    graph_small  build_graph over it (committed under a storage root)
    s3_server    moto's S3 server on 127.0.0.1 (dummy credentials, us-east-1), env pointing at it
Tests that need their own copy of a stage output copy the folder (shutil.copytree).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Every Spark JVM of the tests (in-process, `musicmap build-graph`, spark-submit) works on a few
# thousand playlists and lives a minute: there the optimising compiler costs more CPU than it
# saves (bench/BENCHMARKS.md, docs/testing.md). A real run keeps both compilers.
JVM_QUICK = "-XX:TieredStopAtLevel=1"
os.environ.setdefault("SPARK_SUBMIT_OPTS", JVM_QUICK)
# the tests' shared arrays (musicmap/cache.py) go to a folder of their own, never a user's cache
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="musicmap-test-cache-")

SMALL_PLAYLISTS = 3000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cmd(args: list[str], env: dict | None = None, timeout: int = 600, check: bool = True,
            cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a command (the project's Python for 'python'), capture output, fail with it shown."""
    args = [sys.executable if a == "python" else a for a in args]
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run(args, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {p.returncode}\n--- stdout\n"
                             f"{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-6000:]}")
    return p


# Where the musicmap commands of the tests run: a folder outside the checkout, so that nothing
# only importable from the checkout (a folder named train/, conf/) can make a command work.
WORKDIR = Path(tempfile.mkdtemp(prefix="musicmap-cwd-"))
# The console script that `pip install` put beside this Python (README: `musicmap ...`).
MUSICMAP = Path(sys.executable).parent / "musicmap"


def musicmap(*args: str, env: dict | None = None, timeout: int = 600, check: bool = True,
             exe: Path | str = MUSICMAP, cwd: Path = WORKDIR):
    """The installed musicmap command in a subprocess, from a folder outside the checkout (as a
    user runs it)."""
    return run_cmd([str(exe), *args], env=env, timeout=timeout, check=check, cwd=cwd)


def make_bare_venv(venv: Path) -> Path:
    """A venv at `venv` with every dependency (this venv's site-packages) but not the project:
    site-packages is added by a path line in a .pth file, so the editable install's own .pth hook
    (which maps `musicmap` to the checkout) never runs."""
    import sysconfig
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "musicmap-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def build_wheel(out: Path) -> Path:
    """The project's wheel, built from a copy of the checkout (setuptools writes build/ into the
    folder it builds) into `out`."""
    src = out / "src"
    for name in ["musicmap", "train", "spark_jobs", "recommend", "conf"]:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(src)], check=True, capture_output=True)
    (wheel,) = out.glob("musicmap-*.whl")
    return wheel


def recs_table(recs_uri: str):
    """(the committed recs table, its Committed) at recs_uri."""
    from musicmap import schemas, storage
    r = storage.open_committed(recs_uri, "recommend")
    return storage.read_parquet(r.path(), schema=schemas.RECS), r


@pytest.fixture(scope="session")
def spark():
    from musicmap.config import load_config
    from musicmap.spark_jobs.build_graph import spark_session
    cfg = load_config(overrides=["graph.spark_driver_memory=2g", "graph.shuffle_partitions=4"])
    s = spark_session(cfg, local=True)
    yield s
    s.stop()


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder `build` fills once per test run, copied into this test process's own temp folder.

    Under `make test`'s test processes (pytest-xdist) the first process to ask builds it under a
    lock in the folder they share, and the others wait and copy: the shared data is made once,
    not once per process. Each process gets a copy, since tests write into these roots."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / f"built-{name}"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / ".built").exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            build(shared)
            (shared / ".built").touch()
    mine = tmp_path_factory.mktemp(name)
    shutil.copytree(shared, mine, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".built"))
    return mine


@pytest.fixture(scope="session")
def mpd_small(tmp_path_factory) -> Path:
    """<root>/mpd with 3 slices, a challenge set (20 per category) and synth_info.json."""
    from musicmap import synth
    return built_once(tmp_path_factory, "mpd_small", lambda root: synth.generate(
        str(root / "mpd"), SMALL_PLAYLISTS, random_seed=7, challenge_per_category=20, show_progress=False))


def build_graph(spark, root: str, overrides=(), input_uri=None, output_uri=None) -> dict:
    from musicmap import storage
    from musicmap.config import load_config
    from musicmap.spark_jobs.graph import build
    cfg = load_config(overrides=list(overrides), root=root)
    storage.configure(cfg.storage)
    return build(spark, cfg, input_uri or storage.stage_uri(cfg, "mpd"),
                 output_uri or storage.stage_uri(cfg, "graph"))


@pytest.fixture(scope="session")
def graph_small(request, mpd_small, tmp_path_factory) -> tuple[Path, dict]:
    """(root, stats): a storage root holding mpd/ and a committed graph/."""
    def build(folder: Path) -> None:
        shutil.copytree(mpd_small / "mpd", folder / "root" / "mpd")
        # Spark starts only in the process that builds
        stats = build_graph(request.getfixturevalue("spark"), str(folder / "root"))
        (folder / "stats.json").write_text(json.dumps(stats))
    folder = built_once(tmp_path_factory, "graph_small", build)
    return folder / "root", json.loads((folder / "stats.json").read_text())


TRAIN_SETTINGS = ["train.epochs=4", "train.batch_size=8192", "train.lr=0.02", "train.val_max_cases=0",
                  "train.patience=0", "train.progress=false"]
# TRAIN_SETTINGS as `musicmap train`'s options, 2 epochs: the end-to-end runs' training.
CLI_TRAIN = [a for o in [*TRAIN_SETTINGS, "train.epochs=2"] for a in ("--set", o)]


def torchrun_train(root, *overrides, model_dir=None, nproc=2, max_restarts=0, timeout=600, env=None,
                   check=True):
    """torchrun --standalone --nproc_per_node=N train/main.py --root ROOT with TRAIN_SETTINGS; one
    process without restarts is `python train/main.py` (the same run without torchrun's agent)."""
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
              f"--max-restarts={max_restarts}"] if nproc > 1 or max_restarts else []
    args = ["python", *launch, str(ROOT / "train" / "main.py"), "--root", str(root)]
    if model_dir is not None:
        args += ["--set", f"paths.model={model_dir}"]
    for o in [*TRAIN_SETTINGS, *overrides]:
        args += ["--set", o]
    return run_cmd(args, timeout=timeout, env=env, check=check)


@pytest.fixture(scope="session")
def trained_small(graph_small, tmp_path_factory) -> Path:
    """A storage root with mpd/, graph/ and model/ (4 epochs, 2 ranks) of the small data."""
    def build(root: Path) -> None:
        src, _ = graph_small
        shutil.copytree(src / "mpd", root / "mpd")
        shutil.copytree(src / "graph", root / "graph")
        torchrun_train(root)
    return built_once(tmp_path_factory, "trained_small", build)


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3-compatible server on loopback, started once: its endpoint URL."""
    pytest.importorskip("moto", reason="moto is not installed (pip install -e '.[test]')")
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_server(s3_endpoint, monkeypatch):
    """The loopback S3 server for one test: the environment points boto/s3fs at it (dummy
    credentials) for that test only, and storage is configured afresh before and after it, so no
    later test runs against it by accident. Buckets are made by the tests."""
    from musicmap import storage
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(k, v)
    storage.configure()
    yield s3_endpoint
    monkeypatch.undo()
    storage.configure()


def make_bucket(name: str) -> None:
    import boto3
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                 region_name="us-east-1").create_bucket(Bucket=name)


# ------------------------------------------------------------------ markers and skips

# Tests that need one of these run Spark, torchrun or a trained model: they are the slow ones,
# which `make test-fast` leaves out (marked here, so a new test cannot forget it).
HEAVY_FIXTURES = {"spark", "graph_small", "trained_small"}


# The test files from longest to shortest (measured; the unlisted ones take seconds): under
# `make test`'s processes (each file whole in one) a long file started last would run on alone,
# while short files at the end fill the gaps so the processes finish together.
FIRST_FILES = ("test_faults.py", "test_e2e.py", "test_cluster.py", "test_commands.py", "test_bad_input.py",
               "test_build_graph.py", "test_ranker.py", "test_recommend.py", "test_train.py", "test_map.py",
               "test_collectives.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: FIRST_FILES.index(item.path.name) if item.path.name in FIRST_FILES else len(FIRST_FILES))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With MUSICMAP_NO_SKIP=1 (.ci/run sets it) a skipped test fails, with its reason: in CI
    every tool is installed, so a skip would hide a check that did not run."""
    outcome = yield
    rep = outcome.get_result()
    if os.environ.get("MUSICMAP_NO_SKIP") == "1" and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome, rep.longrepr = "failed", f"skipped in CI (MUSICMAP_NO_SKIP=1): {reason}"
