"""`make demo`: the whole pipeline on generated data, each stage run as a user runs it.

    python -m musicmap.demo [--root demo-data] [--config conf/demo.yaml] [--set key=value ...]

synth -> check -> build-graph -> train (2 processes under torchrun) -> fit-ranker -> recommend
(+ challenge submission) -> evaluate (model beside baselines) -> similar (the seed system's table for the most
popular track of one community) -> map (the music map web page). Every step is the `musicmap`
command line in a subprocess.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from importlib import resources

from musicmap import storage
from musicmap.config import load_config
from musicmap.graph import load_tracks


def step(title: str, args: list[str]) -> None:
    print(f"\n=== {title}: musicmap {' '.join(args)}", flush=True)
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "musicmap.cli", *args])
    if rc != 0:
        print(f"demo: step '{title}' failed (exit status {rc})", file=sys.stderr)
        sys.exit(rc)
    print(f"=== {title}: done in {time.time() - t0:.0f}s", flush=True)


def famous_track(root: str, community: str = "reggae") -> list[str]:
    """`similar` arguments for the most popular track of a generated community (by name and
    artist when that pair is unique in the catalogue, else by URI)."""
    info = storage.read_json(storage.join(root, "mpd", "synth_info.json"))
    comm = next((c for c in info["communities"] if c["name"] == community), info["communities"][0])
    cfg = load_config(root=root)
    tracks = load_tracks(storage.open_committed(storage.stage_uri(cfg, "graph")))
    rows = {u: (n, a) for u, n, a in zip(tracks["track_uri"].to_pylist(),
                                        tracks["track_name"].to_pylist(),
                                        tracks["artist_name"].to_pylist())}
    for uri in comm["top_tracks"]:
        if uri in rows:
            name, artist = rows[uri]
            same = sum(1 for n, a in rows.values() if n == name and a == artist)
            return ["--track", name, "--artist", artist] if same == 1 else ["--track-uri", uri]
    return ["--track-uri", comm["top_tracks"][0]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="musicmap.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="demo-data", help="storage root (default demo-data)")
    p.add_argument("--config", default=str(resources.files("musicmap.conf").joinpath("demo.yaml")),
                   help="config file (default conf/demo.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    common = ["--config", args.config, "--root", args.root]
    for o in args.overrides:
        common += ["--set", o]
    t0 = time.time()
    mpd = storage.join(args.root, "mpd")
    step("1/9 generate a synthetic MPD", ["synth", *common, "--challenge"])
    step("2/9 check it against the MPD's rules", ["-q", "check", *common, mpd, "--top", "5"])
    step("3/9 build the graph (local Spark)", ["build-graph", *common])
    step("4/9 train LightGCN (torchrun, 2 CPU processes)", ["train", *common, "--nproc", "2"])
    step("5/9 fit the re-ranker on validation playlists", ["-q", "fit-ranker", *common])
    step("6/9 recommend top-500 (+ challenge submission)",
         ["recommend", *common, "--challenge", storage.join(mpd, "challenge_set.json")])
    step("7/9 evaluate beside the baselines", ["-q", "evaluate", *common])
    print("\n(the seed is the most popular track of the generated 'reggae' community; the model was "
          "never told the communities, so its neighbours show what it learned from co-occurrence)")
    step("8/9 tracks like a well-known track", ["-q", "similar", *common, *famous_track(args.root)])
    step("9/9 the music map (a web page of the catalogue)", ["-q", "map", *common])
    page = storage.open_committed(storage.stage_uri(load_config(args.config, args.overrides, root=args.root),
                                                    "map")).path("index.html")
    print(f"\ndemo: the whole pipeline ran in {time.time() - t0:.0f}s; outputs under {args.root}/ "
          f"(mpd, graph, model, ranker, recs, metrics, map)\nopen the music map: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
