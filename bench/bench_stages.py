"""Seconds per pipeline stage of this checkout against another one (an older commit with its own
.venv), on the same MPD slices, stage by stage in turn (old, then new) so both see the same load:
the ratio is measured in one run. Also prints what each served on the test cases.

    git worktree add /tmp/old ee43aac && cp -a .venv /tmp/old/.venv \
        && /tmp/old/.venv/bin/python -m pip install --no-deps --no-build-isolation -e /tmp/old
    .venv/bin/python -m bench.bench_stages --old /tmp/old --mpd bench/out/stages/mpd

Without --mpd, `musicmap synth --config conf/demo.yaml` writes the slices first (20,000 playlists).
Each checkout gets its own root under --out (mpd linked to the shared slices).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
STAGES = ["build-graph", "train --nproc 2", "fit-ranker", "recommend --playlists all", "evaluate"]


def stage(checkout: Path, root: Path, command: str, extra: list[str]) -> float:
    py = checkout / ".venv" / "bin" / "python"
    env = {**os.environ, "PYSPARK_PYTHON": str(py), "PYSPARK_DRIVER_PYTHON": str(py),
           "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [str(py), "-m", "musicmap.cli", "-q", *command.split(), "--config", str(checkout / "conf/demo.yaml"),
           "--root", str(root), "--set", "train.progress=false", *extra]
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, cwd="/tmp", stdout=subprocess.DEVNULL)
    return time.time() - t0


def served(root: Path) -> dict:
    """Test NDCG / R-prec / clicks of what recommend served, from evaluate's newest report."""
    versions = sorted(p for p in (root / "metrics").iterdir() if p.is_dir() and p.name.startswith("v-"))
    report = json.loads((versions[-1] / "metrics.json").read_text())
    name = report["model"]["served"]
    m = report["methods"][name]["challenge"]["all"]
    return {"method": name, "ndcg": m["ndcg"], "r_precision": m["r_precision"], "clicks": m["clicks"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, type=Path, help="the other checkout (with its own .venv)")
    ap.add_argument("--mpd", type=Path, help="MPD slices both run on (default: generated)")
    ap.add_argument("--out", type=Path, default=HERE / "bench/out/stages")
    ap.add_argument("--set", action="append", default=[], help="config override for both, as the CLI's")
    args = ap.parse_args()
    extra = [a for s in args.set for a in ("--set", s)]
    mpd = args.mpd or args.out / "mpd"
    if not args.mpd:
        subprocess.run([sys.executable, "-m", "musicmap.cli", "-q", "synth", "--config", str(HERE / "conf/demo.yaml"),
                        "--root", str(args.out / "synth")], check=True)
        mpd = args.out / "synth" / "mpd"
    roots = {}
    for name in ("old", "new"):
        roots[name] = args.out / name
        subprocess.run(["rm", "-rf", str(roots[name])], check=True)
        roots[name].mkdir(parents=True)
        (roots[name] / "mpd").symlink_to(mpd.resolve())
    checkouts = {"old": args.old.resolve(), "new": HERE}
    secs = {"old": {}, "new": {}}
    for command in STAGES:
        for name in ("old", "new"):
            secs[name][command] = stage(checkouts[name], roots[name], command, extra)
            print(f"{name:>3} {command:<28} {secs[name][command]:7.1f} s", flush=True)
    print("\n| stage | old s | new s | new / old |\n| --- | --- | --- | --- |")
    for command in STAGES + ["whole pipeline"]:
        o = sum(secs["old"].values()) if command == "whole pipeline" else secs["old"][command]
        n = sum(secs["new"].values()) if command == "whole pipeline" else secs["new"][command]
        print(f"| {command} | {o:.0f} | {n:.0f} | {n / o:.2f}x |")
    for name in ("old", "new"):
        s = served(roots[name])
        print(f"{name}: served {s['method']} test NDCG {s['ndcg']:.4f} R-prec {s['r_precision']:.4f} "
              f"clicks {s['clicks']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
