"""README's commands beyond the pipeline (check, similar, tune) as installed, from a folder outside
the checkout, and a stage run from a non-editable install (the wheel). `musicmap map` as installed
is test_map.py's `mapped` fixture (and the wheel's test here)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import CLI_TRAIN, WORKDIR, build_wheel, make_bare_venv, musicmap

from musicmap import schemas, storage


@pytest.mark.slow
def test_the_other_commands_run_as_installed(trained_small, tmp_path):
    """check, similar and tune: README's stage table beyond the pipeline (map: test_map.py)."""
    root = tmp_path / "mm"
    for stage in ("mpd", "graph", "model"):
        shutil.copytree(trained_small / stage, root / stage)
    root = str(root)
    tracks = storage.read_parquet(storage.open_committed(f"{root}/graph").path("tracks"), schema=schemas.TRACKS)
    top = tracks.sort_by("track_idx").slice(0, 1).to_pylist()[0]
    check = musicmap("check", f"{root}/mpd")
    assert "number of playlists 3000" in check.stdout
    similar = musicmap("similar", "--root", root, "--track", top["track_name"], "--artist", top["artist_name"])
    assert f"{top['track_name']} - {top['artist_name']}" in similar.stdout
    tune = musicmap("tune", "--root", root, "--trials", "1", "--set", "tune.ranker_trials=1", *CLI_TRAIN)
    assert "best settings" in tune.stdout
    assert storage.open_committed(f"{root}/tune").version
    assert not list(WORKDIR.iterdir()), "a command wrote into the folder it was run from"


@pytest.mark.slow
def test_a_non_editable_install_runs_a_stage(trained_small, tmp_path):
    """The wheel, installed (not editable) into a Python that has the dependencies but not the
    project, runs `musicmap map` (which reads its page template from the package) from a folder
    outside the checkout."""
    venv = make_bare_venv(tmp_path / "venv")
    wheel = build_wheel(tmp_path / "wheel")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    root = tmp_path / "root"
    for stage in ("graph", "model"):
        shutil.copytree(trained_small / stage, root / stage)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import musicmap; print(musicmap.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert where.startswith(str(venv)), where                    # the installed copy, not the checkout
    p = musicmap("map", "--root", str(root), exe=venv / "bin" / "musicmap", cwd=tmp_path)
    page = p.stdout.strip().splitlines()[-1].removeprefix("open ")
    assert "Music Map:" in open(page).read()
