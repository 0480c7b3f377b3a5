"""The full-size rehearsal: README's stages in order on generated playlists with the real long tail,
at 10K, 100K and 1M playlists (the MPD's size), with each stage's wall time, the peak memory of
all its processes together and the sizes it worked on, so that growth is measured, not guessed.

    python -m bench.bench_full_mpd                                   # 10K, 100K, 1M (hours at 1M)
    python -m bench.bench_full_mpd --sizes 10000,100000 --out /data/rehearsal
    nohup python -m bench.bench_full_mpd --out /data/rehearsal > rehearsal.log 2>&1 &

Per size N, under OUT/<N>/ (a storage root): `musicmap synth` N playlists and a 10,000-playlist
challenge set (1,000 per category), then build-graph, train --nproc 2 under a time budget
(train.max_minutes: a CPU epoch at 1M takes hours; the budget stops it, exports what it has and
says so), fit-ranker, recommend --playlists all --challenge, evaluate, and at the largest size
recommend --nproc 2 again (two ranks' memory against one's). Each stage is the installed
`musicmap` command, its log in OUT/<N>/logs/. Resumable: a stage whose output is committed (and
whose inputs did not change) keeps its earlier measurement; delete OUT/<N>/<stage folder> to
rerun it.

Memory: every 0.5 s the stage's process tree is read. PSS (proportional set size: a page that k
processes share counts 1/k in each, so a memory-mapped array counts once however many ranks map
it) summed over the processes is the stage's memory; RSS summed (shared pages counted in every
process) is printed beside it as an upper bound. Results: OUT/results.json and a table for
bench/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from musicmap import storage

REPO = Path(__file__).resolve().parents[1]
MUSICMAP = Path(sys.executable).parent / "musicmap"
SIZES = (10_000, 100_000, 1_000_000)
STAGES = ("synth", "build-graph", "train", "fit-ranker", "recommend", "evaluate", "recommend-nproc2")
FOLDER = {"build-graph": "graph", "train": "model", "fit-ranker": "ranker", "recommend": "recs",
          "evaluate": "metrics", "recommend-nproc2": "recs-nproc2"}
GB = 1024 ** 3


class Peak(threading.Thread):
    """Samples a process tree every `every` seconds: peak summed PSS and RSS, and the peak PSS of
    any one process (a rank)."""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.root, self.every, self.stop = psutil.Process(pid), every, threading.Event()
        self.pss = self.rss = self.one = 0

    def run(self):
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            pss = rss = 0
            for p in procs:
                try:
                    m = p.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                pss, rss = pss + m.pss, rss + m.rss
                self.one = max(self.one, m.pss)
            self.pss, self.rss = max(self.pss, pss), max(self.rss, rss)
            self.stop.wait(self.every)


def measure(args: list[str], log: Path) -> dict:
    """Run one stage command; its wall seconds, peak memory and exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(MUSICMAP), *args], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        peak = Peak(proc.pid)
        peak.start()
        rc = proc.wait()
        peak.stop.set()
        peak.join()
    return {"rc": rc, "seconds": round(time.time() - t0, 1), "peak_pss_gib": round(peak.pss / GB, 2),
            "peak_rss_gib": round(peak.rss / GB, 2), "peak_one_process_gib": round(peak.one / GB, 2),
            "command": "musicmap " + " ".join(args)}


def commands(root: Path, n: int, train: argparse.Namespace) -> dict[str, list[str]]:
    """Each stage's musicmap command; train under the budget given (minutes, and steps if set)."""
    r = ["--root", str(root)]
    budget = [f"train.max_minutes={train.train_minutes}"] + ([f"train.max_steps={train.train_steps}"] if train.train_steps else [])
    return {"synth": ["synth", "--playlists", str(n), "--out", str(root / "mpd"), "--challenge"],
            "build-graph": ["build-graph", *r],
            "train": ["train", *r, "--nproc", str(train.train_nproc), *sum((["--set", b] for b in budget), [])],
            "fit-ranker": ["fit-ranker", *r],
            "recommend": ["recommend", *r, "--playlists", "all", "--challenge", str(root / "mpd" / "challenge_set.json")],
            "evaluate": ["evaluate", *r],
            "recommend-nproc2": ["recommend", *r, "--playlists", "all", "--nproc", "2", "--set",
                                 f"paths.recs={root / 'recs-nproc2'}", "--challenge", str(root / "mpd" / "challenge_set.json")]}


def committed(root: Path, stage: str) -> str | None:
    """The committed version of a stage's output (synth: its info file), else None."""
    if stage == "synth":
        return "synth" if (root / "mpd" / "synth_info.json").exists() else None
    try:
        return storage.open_committed(str(root / FOLDER[stage])).version
    except storage.NotCommittedError:
        return None


def sizes(root: Path, stage: str) -> dict:
    """What a stage worked on, from its committed output."""
    def manifest(folder, name):
        return storage.read_json(storage.open_committed(str(root / folder)).path(name))
    if stage == "synth":
        info = json.loads((root / "mpd" / "synth_info.json").read_text())
        return {"playlists": info["playlists"], "catalog_tracks": info["catalog_tracks"]}
    if stage == "build-graph":
        s = manifest("graph", "stats.json")
        g, official = s["graph"], s["input_official"]
        return {"playlists": official["playlists"], "occurrences": official["tracks"],
                "distinct_tracks": official["unique_tracks"], "graph_playlists": g["playlists"],
                "catalogue_tracks": g["tracks"], "edges": g["interactions"], "eval_cases": sum(g["eval_cases"].values())}
    if stage == "train":
        m, h = manifest("model", "manifest.json"), manifest("model", "history.json")
        last = h[-1] if h else {}
        return {"embedded_tracks": m["tracks"], "edges": m["edges"], "steps_per_epoch": m["steps_per_epoch"],
                "steps_run": last.get("steps"), "budget": m.get("budget"),
                "seconds_per_epoch": round(last["seconds"] * m["steps_per_epoch"] / max(last.get("steps") or 1, 1), 1)
                if last else None}
    if stage == "fit-ranker":
        return manifest("ranker", "manifest.json")["cases"]
    if stage in ("recommend", "recommend-nproc2"):
        s = manifest(FOLDER[stage], "summary.json")
        return {"rows": s["rows"], "cases": s.get("cases"), "challenge": (s.get("challenge") or {}).get("playlists")}
    m = manifest("metrics", "metrics.json")
    return {k: v for k, v in m["cases"].items() if k != "challenge_keys"}


def run_size(out: Path, n: int, train: argparse.Namespace, results: dict, nproc2: bool, until: str) -> None:
    root = out / str(n)
    done = results.setdefault(str(n), {})
    cmds = commands(root, n, train)
    dirty = False
    for stage in STAGES:
        if stage == "recommend-nproc2" and not nproc2 or STAGES.index(stage) > STAGES.index(until):
            continue
        if not dirty and committed(root, stage) and stage in done and done[stage].get("rc") == 0:
            print(f"{n:>9,} {stage:<17} kept: {done[stage]['seconds']:.0f} s, {done[stage]['peak_pss_gib']:.1f} GiB",
                  flush=True)
            continue
        dirty = stage != "recommend-nproc2"        # everything after a rerun stage reruns
        r = measure(cmds[stage], root / "logs" / f"{stage}.log")
        if r["rc"] == 0:
            r["sizes"] = sizes(root, stage)
        done[stage] = r
        (out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"{n:>9,} {stage:<17} rc {r['rc']}: {r['seconds']:.0f} s, PSS {r['peak_pss_gib']:.1f} GiB "
              f"(RSS {r['peak_rss_gib']:.1f}), {r.get('sizes')}", flush=True)
        if r["rc"]:
            print(f"  failed: see {root / 'logs' / (stage + '.log')}", flush=True)
            return


def table(results: dict) -> str:
    """Markdown: per stage, seconds and peak PSS at each size, and the growth between sizes."""
    ns = sorted(results, key=int)
    head = "| stage | " + " | ".join(f"{int(n):,}: s / GiB" for n in ns) + " | growth (time, memory) per 10x |"
    lines = [head, "|" + " --- |" * (len(ns) + 2)]
    for stage in STAGES:
        row, got = [stage], []
        for n in ns:
            r = results[n].get(stage)
            ok = r and r.get("rc") == 0
            row.append(f"{r['seconds']:,.0f} / {r['peak_pss_gib']:.1f}" if ok else "-")
            got.append((int(n), r) if ok else None)
        pairs = [(a, b) for a, b in zip(got, got[1:]) if a and b]
        row.append(", ".join(f"{b[1]['seconds'] / max(a[1]['seconds'], 1):.1f}x, "
                             f"{b[1]['peak_pss_gib'] / max(a[1]['peak_pss_gib'], 0.01):.1f}x" for a, b in pairs) or "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="playlists per rehearsal")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "full_mpd"), help="where the roots go")
    ap.add_argument("--train-minutes", type=float, default=20.0, help="train.max_minutes of each size")
    ap.add_argument("--train-nproc", type=int, default=2, help="train's --nproc (1 where two ranks do not fit)")
    ap.add_argument("--train-steps", type=int, default=0, help="train.max_steps (a total: a resumed run counts the steps done)")
    ap.add_argument("--until", choices=STAGES, default=STAGES[-1], help="stop after this stage (resume later)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    ns = [int(s) for s in args.sizes.split(",")]
    for n in ns:
        run_size(out, n, args, results, nproc2=n == max(ns), until=args.until)
    print(table({n: results[n] for n in map(str, ns) if n in results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
