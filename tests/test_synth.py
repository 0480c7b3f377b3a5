"""musicmap synth: the exact MPD format, the real data's shapes, determinism, streaming, and the
challenge set."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import musicmap, run_cmd

from musicmap import mpd, synth

PLAYLIST_KEYS = set(mpd.PLAYLIST_FIELDS)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """10,000 generated playlists, loaded."""
    out = tmp_path_factory.mktemp("synth10k")
    synth.generate(str(out), 10_000, random_seed=3, show_progress=False)
    playlists = []
    for f in sorted(out.glob("mpd.slice.*.json"), key=lambda f: mpd.slice_sort_key(f.name)):
        playlists += json.loads(f.read_text())["playlists"]
    return out, playlists


def test_files_are_exactly_in_the_mpd_format(sample):
    out, playlists = sample
    names = sorted((f.name for f in out.glob("mpd.slice.*.json")), key=mpd.slice_sort_key)
    assert names == [f"mpd.slice.{i}-{i + 999}.json" for i in range(0, 10_000, 1000)]
    text = (out / names[3]).read_text()
    doc = json.loads(text)
    assert set(doc) == {"info", "playlists"}
    assert doc["info"]["slice"] == "3000-3999" and doc["info"]["version"] == "v1"
    assert text.startswith('{\n    "info": {') and '\n            "tracks": [\n' in text  # indented
    assert len(doc["playlists"]) == 1000
    assert [p["pid"] for p in playlists] == list(range(10_000))
    for p in playlists:
        assert PLAYLIST_KEYS <= set(p) <= PLAYLIST_KEYS | {"description"}
        assert mpd.validate_playlist(p) == []
        assert all(set(t) == mpd.TRACK_KEYS for t in p["tracks"])
    p = playlists[0]
    assert isinstance(p["collaborative"], str) and p["collaborative"] in ("true", "false")
    assert isinstance(p["modified_at"], int)


def test_shapes_follow_the_real_statistics(sample):
    _, playlists = sample
    lengths = np.array([p["num_tracks"] for p in playlists])
    assert lengths.min() >= 5 and lengths.max() <= 250
    assert 60 <= lengths.mean() <= 72
    mode = Counter(lengths.tolist()).most_common(1)[0][0]
    assert 15 <= mode <= 25
    when = np.array([p["modified_at"] for p in playlists])
    assert (when % 86400 == 0).all()                     # rounded to midnight UTC
    first = dt.datetime(2010, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    last = dt.datetime(2017, 11, 1, tzinfo=dt.timezone.utc).timestamp()
    assert first <= when.min() and when.max() <= last
    in_2017 = (when >= dt.datetime(2017, 1, 1, tzinfo=dt.timezone.utc).timestamp()).mean()
    assert in_2017 > 0.5                                 # skewed to 2017
    followers = np.array([p["num_followers"] for p in playlists])
    assert followers.min() >= 1 and 0.7 <= (followers == 1).mean() <= 0.8
    edits = Counter(p["num_edits"] for p in playlists)
    assert min(edits) >= 1 and edits.most_common(1)[0][0] in (2, 3)
    # long-tailed popularity: most tracks occur in one or two playlists, a few in very many
    counts = Counter(t["track_uri"] for p in playlists for t in p["tracks"])
    share_rare = np.mean([c <= 2 for c in counts.values()])
    assert share_rare > 0.5
    assert max(counts.values()) > 100 * np.median(list(counts.values()))
    # titles: messy duplicates of common ones, some emoji, a few descriptions
    names = Counter(p["name"] for p in playlists)
    assert names.most_common(1)[0][1] > 100
    assert any(ord(ch) > 0x2000 for n in names for ch in n)
    assert 0.005 < np.mean(["description" in p for p in playlists]) < 0.05


def test_playlists_draw_from_a_community_their_title_reflects(sample):
    out, playlists = sample
    cat = synth.Catalogue(synth.default_tracks(10_000), 24, 3)
    focus = []
    for p in playlists[:2000]:
        comms = Counter(cat.community_of(synth.id_of_uri(t["track_uri"], 3)) for t in p["tracks"])
        focus.append(comms.most_common(1)[0][1] / p["num_tracks"])
    assert np.mean(focus) > 0.5   # synth.community_focus 0.6, less what the dedup of repeats drops
    reggae = [p for p in playlists if "reggae" in p["name"].lower() and "reggaeton" not in p["name"].lower()]
    assert reggae
    share = np.mean([Counter(cat.community_name(cat.community_of(synth.id_of_uri(t["track_uri"], 3)))
                             for t in p["tracks"]).most_common(1)[0][0] == "reggae" for p in reggae])
    assert share > 0.8


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    digests = []
    for i, random_seed in enumerate([5, 5, 6]):
        synth.generate(str(tmp_path / str(i)), 1500, random_seed=random_seed, show_progress=False)
        digests.append(hashlib.sha256(b"".join(
            f.read_bytes() for f in sorted((tmp_path / str(i)).glob("mpd.slice.*")))).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_memory_does_not_grow_with_playlists(tmp_path):
    """Slices are generated and written one at a time: peak memory of 2,000 and 10,000 playlists
    (same catalogue size) is about the same."""
    code = ("import resource, sys; from musicmap import synth; "
            "synth.generate(sys.argv[1], int(sys.argv[2]), tracks=30000, show_progress=False); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    rss = [int(run_cmd([sys.executable, "-c", code, str(tmp_path / str(n)), str(n)]).stdout.split()[-1])
           for n in (2000, 10000)]
    assert rss[1] - rss[0] < 40 * 1024, f"peak RSS grew from {rss[0]} to {rss[1]} KiB"


def test_challenge_set_in_the_real_format(mpd_small):
    doc = json.loads((mpd_small / "mpd" / "challenge_set.json").read_text())
    assert set(doc) == {"date", "version", "playlists"}
    held = json.loads((mpd_small / "mpd" / "challenge_holdouts.json").read_text())["playlists"]
    assert len(doc["playlists"]) == len(held) == 10 * 20
    by_cat = Counter(h["category"] for h in held)
    assert set(by_cat) == {c.name for c in mpd.CHALLENGE_CATEGORIES} and set(by_cat.values()) == {20}
    cats = {c.name: c for c in mpd.CHALLENGE_CATEGORIES}
    for p, h in zip(doc["playlists"], held):
        c = cats[h["category"]]
        assert p["pid"] == h["pid"]
        assert ("name" in p) == c.title
        assert len(p["tracks"]) == p["num_samples"] == c.seeds
        assert p["num_samples"] + p["num_holdouts"] == p["num_tracks"] == c.seeds + len(h["tracks"])
        assert all(set(t) == mpd.TRACK_KEYS for t in p["tracks"])
        if c.seeds and not c.random:
            assert [t["pos"] for t in p["tracks"]] == list(range(c.seeds))
        seeds = [t["track_uri"] for t in p["tracks"]]
        if len(set(seeds + h["tracks"])) == p["num_tracks"]:  # no repeated track (1% repeat one)
            assert not set(seeds) & set(h["tracks"])


def test_cli_writes_and_reports(tmp_path):
    p = musicmap("synth", "--playlists", "1200", "--out", str(tmp_path / "mpd"), "--seed", "1")
    assert "1,200 playlists in 2 slices" in p.stdout
    assert sorted(f.name for f in (tmp_path / "mpd").glob("mpd.slice.*")) == [
        "mpd.slice.0-999.json", "mpd.slice.1000-1999.json"]
    assert len(json.loads((tmp_path / "mpd" / "mpd.slice.1000-1999.json").read_text())["playlists"]) == 200
