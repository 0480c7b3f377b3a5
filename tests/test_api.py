"""musicmap.load, the Python API: README's example run as written, and the API serving exactly
what the recommend job wrote for the same playlists."""
from __future__ import annotations

import re

import numpy as np
from conftest import ROOT, musicmap, recs_table, run_cmd

import musicmap as mm_package
from musicmap.cases import load_eval
from musicmap.config import load_config
from musicmap.graph import uri_index
from musicmap.recommend import context


def readme_example() -> str:
    """The Python block that follows README's marker line."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- tests/test_api\.py runs this block -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README's Python example (and its marker) is missing"
    return m.group(1)


def test_the_readme_example_runs_as_written(trained_small, tmp_path):
    code = readme_example()
    assert len(code.strip().splitlines()) == 5
    (tmp_path / "demo-data").symlink_to(trained_small)   # a folder outside the checkout
    p = run_cmd(["python", "-c", code], cwd=tmp_path)
    blocks = p.stdout.split("\n\n")
    assert re.match(r"10 tracks \(lightgcn, fold-in \w+\):", p.stdout)   # no ranker fitted there
    assert "5 tracks (lightgcn" in blocks[-1] and len(re.findall(r"^\s+\d+\. ", p.stdout, re.M)) == 15


def test_recommend_gives_what_the_recommend_job_wrote(trained_small, tmp_path):
    """For test cases (seeds by URI, the title), musicmap.load(root).recommend ranks the same top
    10 as `musicmap recommend --playlists test`; a name works as its URI does."""
    musicmap("recommend", "--root", str(trained_small), "--playlists", "test",
             "--set", f"paths.recs={tmp_path / 'recs'}")
    t, _ = recs_table(str(tmp_path / "recs"))
    written = {}
    for pid, cat, rank, uri in zip(*(t[c].to_pylist() for c in ("pid", "category", "rank", "track_uri"))):
        written.setdefault((pid, cat), {})[rank] = uri
    ctx = context.load_context(load_config(root=str(trained_small)))
    cases = load_eval(ctx.committed, "test", uri_index(ctx.tracks))
    mm = mm_package.load(str(trained_small))
    checked = 0
    for i in range(0, len(cases), max(1, len(cases) // 12)):
        recs = mm.recommend(seed_tracks=cases.seed_uris[i], title=cases.name[i], k=10)
        want = written[(int(cases.pid[i]), cases.category[i])]
        assert recs.uris == [want[r] for r in range(1, 11)], (cases.category[i], recs)
        assert not set(recs.uris) & set(cases.seed_uris[i]) and recs.method in ("lightgcn", "title")
        checked += 1
    assert checked >= 10
    # "name - artist", as results print a track, is that track; the scores come best first
    pairs = [f"{n} - {a}" for n, a in zip(ctx.tracks["track_name"].to_pylist(), ctx.tracks["artist_name"].to_pylist())]
    j = next(j for j in range(len(pairs)) if pairs.count(pairs[j]) == 1)
    a = mm.recommend(seed_tracks=[ctx.uris[j].as_py()], k=20)
    b = mm.recommend(seed_tracks=[pairs[j]], k=20)
    assert a.uris == b.uris and len(a) == 20 and np.all(np.diff(a.scores) <= 0)
    assert mm.similar(pairs[j], k=5).names == mm.similar(ctx.uris[j].as_py(), k=5).names
