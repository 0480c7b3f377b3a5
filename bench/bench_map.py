"""The music map's cost (issue 14): `musicmap map` time and peak memory, and the page's load and
frame time in headless Chromium.

    python -m bench.bench_map --demo-root demo-data --scale seed     # after `make demo`
    python -m bench.bench_map --page-points 600000 --skip-map        # the page alone

- `musicmap map` as a user runs it (a subprocess; peak = the summed resident memory of its
  process tree): on the demo's trained model (--demo-root), and on bench/graphgen.py's graph at
  --scale with random embeddings committed as the model (bench_ranker.random_model: the cost of
  the layout, the regions and the neighbour lists does not depend on the values).
- The page: a map of --page-points generated points (clustered positions, names, neighbour
  lists; more tracks than map.vector_tracks, so no vectors, as a full-MPD map would be) written
  by tools.map's own page writer, opened from the file system in headless Chromium (software
  WebGL: SwiftShader, no GPU): seconds until the page is ready, the mean time to draw a frame of
  every point (musicmap.frameTime, a pixel read back each frame so the frame is finished), and of
  the even sample the page draws while the view moves when a whole frame is slow.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from bench import graphgen
from bench.bench_ranker import random_model
from bench.common import ProcessTreeMemory
from musicmap import storage
from musicmap.tools.map import page_data, write_page

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "map"


def time_map(root: str, config: str | None) -> dict:
    cmd = [sys.executable, "-m", "musicmap.cli", "-q", "map", "--root", root,
           "--set", "train.progress=false"] + (["--config", config] if config else [])
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with ProcessTreeMemory(p.pid, every=0.2) as mem:
        out, err = p.communicate()
    if p.returncode:
        sys.exit(f"bench_map: {' '.join(cmd)} exited {p.returncode}\n{out}\n{err[-3000:]}")
    m = storage.open_committed(storage.join(root, "map"))
    s = storage.read_json(m.path("summary.json"))
    return {"tracks": s["tracks"], "regions": s["regions"], "seconds": round(time.perf_counter() - t, 1),
            "layout_seconds": s["layout_seconds"], "peak_gb": round(mem.total_peak / 2 ** 30, 2),
            "page_mb": round((os.path.getsize(m.path("data.js")) + os.path.getsize(m.path("index.html"))) / 2 ** 20, 1)}


def synthetic_page(n: int, out: Path) -> Path:
    """A map folder of n clustered points written by tools.map.write_page; its index.html."""
    rng = np.random.default_rng(0)
    R = 60
    centres = rng.uniform(-0.8, 0.8, (R, 2))
    region = rng.integers(0, R, n).astype(np.int16)
    xy = np.clip(centres[region] + rng.normal(0, 0.05, (n, 2)), -1, 1).astype(np.float32)
    tracks = pa.table({"track_name": [f"track {i}" for i in range(n)],
                       "artist_name": [f"artist {i // 10}" for i in range(n)],
                       "track_uri": [f"spotify:track:{i:022d}" for i in range(n)],
                       "train_playlists": rng.zipf(1.6, n).clip(5, 40000).astype(np.int32)})
    nbr = rng.integers(0, n, (n, 10)).astype(np.int32)
    data = page_data(tracks, xy, region, [f"region {r}" for r in range(R)], nbr,
                     np.sort(rng.random((n, 10)).astype(np.float32))[:, ::-1], None, 0)
    w = storage.StageWriter(str(out))
    write_page(w, data, f"Music Map: {n:,} generated points")
    w.commit({"stage": "map", "tracks": n})
    return Path(storage.open_committed(str(out)).path("index.html"))


def time_page(index: Path, frames: int) -> dict:
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        t = time.perf_counter()
        d.get(index.as_uri())
        while not d.execute_script("return window.musicmap && window.musicmap.ready"):
            time.sleep(0.02)
        load = time.perf_counter() - t
        drawn = d.execute_script("return musicmap.pointsDrawn")
        frame_ms = d.execute_script(f"return musicmap.frameTime({frames})")
        moving_points = d.execute_script("return musicmap.movingPoints()")
        moving_ms = d.execute_script(f"return musicmap.frameTime({frames}, {moving_points})")
        t = time.perf_counter()
        hits = d.execute_script("return musicmap.search('track 12345').length")
        search_ms = (time.perf_counter() - t) * 1000
        errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        d.quit()
    return {"points": drawn, "load_seconds": round(load, 2), "frame_ms": round(frame_ms, 1),
            "moving_points": moving_points, "moving_frame_ms": round(moving_ms, 1),
            "first_search_ms": round(search_ms), "search_hits": hits, "console_errors": errors,
            "page_mb": round(sum(f.stat().st_size for f in index.parent.iterdir()) / 2 ** 20, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo-root", help="a root with a trained model (make demo's demo-data)")
    ap.add_argument("--demo-config", default=str(REPO / "conf" / "demo.yaml"))
    ap.add_argument("--scale", choices=["tiny", "small", "seed", "none"], default="small",
                    help="bench/graphgen.py graph with random embeddings (none: skip)")
    ap.add_argument("--page-points", type=int, default=600_000)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--skip-map", action="store_true", help="only the page")
    a = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    res = {"cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    if not a.skip_map and a.demo_root:
        res["map, demo model"] = time_map(a.demo_root, a.demo_config)
        print("map, demo model:", res["map, demo model"], flush=True)
    if not a.skip_map and a.scale != "none":
        root = str(REPO / "bench" / "out" / a.scale)
        if not storage.exists(storage.join(root, "graph", "_SUCCESS")):
            s = graphgen.SCALES[a.scale]
            graphgen.generate(root, s["playlists"], s["tracks"], s["edges"], s["val"], s["test"])
        random_model(root)
        res[f"map, {a.scale} graph"] = time_map(root, None)
        print(f"map, {a.scale} graph:", res[f"map, {a.scale} graph"], flush=True)
    if a.page_points:
        index = synthetic_page(a.page_points, OUT / f"page-{a.page_points}")
        res[f"page, {a.page_points:,} points"] = time_page(index, a.frames)
        print(f"page, {a.page_points:,} points:", res[f"page, {a.page_points:,} points"], flush=True)
    (OUT / "bench_map.json").write_text(json.dumps(res, indent=1))
    print(f"results in {OUT / 'bench_map.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
