"""Helpers shared by the benchmark scripts (`from bench.common import ...`; the scripts run as
modules of the bench package: python -m bench.<name>)."""
from __future__ import annotations

import threading


class ProcessTreeMemory:
    """Resident memory of a process and all its descendants, polled with psutil every `every` s.

        with ProcessTreeMemory(p.pid) as mem:
            p.wait()
        mem.total_peak          # bytes: the largest sum of the tree's RSS in one poll
        mem.peak[pid]           # bytes: the largest RSS seen for that process
        mem.cmd[pid]            # (parent pid, first 4 words of its command line)

    Processes that end or deny access between two polls are skipped in that poll; without psutil
    nothing is recorded (all peaks stay empty / 0)."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every = pid, every
        self.peak: dict[int, int] = {}
        self.cmd: dict[int, tuple[int, str]] = {}
        self.total_peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def _run(self):
        try:  # psutil is an optional extra (.[test]); without it no peak is sampled
            import psutil
        except ImportError:
            return
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                procs = []
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    total += rss
                    if rss > self.peak.get(p.pid, 0):
                        self.peak[p.pid] = rss
                        if p.pid not in self.cmd:
                            self.cmd[p.pid] = (p.ppid(), " ".join(p.cmdline()[:4]))
                except psutil.Error:
                    pass
            self.total_peak = max(self.total_peak, total)
            self._stop.wait(self.every)
