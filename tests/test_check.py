"""musicmap check: generated data passes; each kind of corruption is reported with its file,
pid and rule, and the exit status is non-zero."""
from __future__ import annotations

import re

from conftest import musicmap
from mpd_faults import make_bad_dataset

from musicmap import check


def test_generated_data_passes_with_official_statistics(mpd_small):
    p = musicmap("check", str(mpd_small / "mpd"))
    out = p.stdout
    assert "number of slice files 3" in out
    assert "number of playlists 3000" in out
    assert re.search(r"no violations: 3 files, 3000 playlists", out)
    avg = float(re.search(r"avg playlist length ([\d.]+)", out).group(1))
    assert 55 < avg < 78
    for section in ("top playlist titles", "top tracks", "top artists",
                    "number of unique tracks", "number of unique albums", "number of unique artists"):
        assert section in out


def test_every_corruption_is_reported(mpd_small, tmp_path):
    faults = make_bad_dataset(mpd_small / "mpd", tmp_path / "bad")
    r = check.check(str(tmp_path / "bad"), show_progress=False)
    reported = {}
    for file, pid, rule, _detail in r.violations:
        reported.setdefault((file, pid), set()).add(rule)
    for (file, pid), rule in faults.playlists.items():
        assert rule in reported.get((file, pid), set()), (file, pid, rule, reported.get((file, pid)))
    for file, rule in faults.files.items():
        assert rule in reported.get((file, None), set()), (file, rule)
    # nothing else is flagged: every other playlist is valid
    flagged = {k for k in reported if k[1] is not None}
    assert flagged == set(faults.playlists)
    assert r.valid_playlists == 3000 + 1 - len(faults.playlists)


def test_cli_exits_nonzero_and_names_the_file(mpd_small, tmp_path):
    faults = make_bad_dataset(mpd_small / "mpd", tmp_path / "bad", encoding_faults=False)
    p = musicmap("check", str(tmp_path / "bad"), check=False)
    assert p.returncode == 1
    trunc = next(f for f, rule in faults.files.items() if rule == "truncated")
    assert re.search(rf"^{re.escape(trunc)}: pid -: truncated: ", p.stdout, re.M)
    (file, pid), rule = next(iter(faults.playlists.items()))
    assert re.search(rf"^{re.escape(file)}: pid {pid}: {rule}: ", p.stdout, re.M)
    assert "VIOLATIONS:" in p.stdout
    assert "Traceback" not in p.stderr


def test_missing_folder_is_a_one_line_error(tmp_path):
    p = musicmap("check", str(tmp_path / "nothing"), check=False)
    assert p.returncode == 2
    assert "no mpd.slice.*.json" in p.stderr and "does not exist" in p.stderr and "Traceback" not in p.stderr
