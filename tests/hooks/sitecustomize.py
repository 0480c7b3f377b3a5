"""Test hooks, loaded only by processes started with this folder on PYTHONPATH (Python imports
sitecustomize at start-up). Spark's Python workers start with the same environment, so they get
them too.

- MUSICMAP_PAUSE_AFTER=<fnmatch pattern>, MUSICMAP_PAUSE_MARKER=<path>: the first storage write
  of a file matching the pattern completes, touches the marker and then hangs, so a test can kill
  the stage exactly while it writes its output.
- MUSICMAP_DAMAGE_READ=<fnmatch pattern>, MUSICMAP_DAMAGE_RANK=<rank>: in the torchrun worker of
  that RANK only, storage reads of a file matching the pattern return its first half, as a node
  whose view of a shared folder differs from the others' (a partial write, a stale cache).
"""
import os


def _pause():
    import fnmatch
    import time
    from pathlib import Path

    from musicmap import storage
    pattern, marker = os.environ["MUSICMAP_PAUSE_AFTER"], os.environ["MUSICMAP_PAUSE_MARKER"]

    def pausing(write):
        def wrapper(*args, **kw):
            out = write(*args, **kw)
            uri = args[1] if write.__name__ == "write_parquet" else args[0]
            if fnmatch.fnmatch(str(uri), pattern):
                Path(marker).touch()
                while True:            # until the test kills us
                    time.sleep(1)
            return out
        wrapper.__name__ = write.__name__
        return wrapper
    storage.write_bytes = pausing(storage.write_bytes)
    storage.write_parquet = pausing(storage.write_parquet)


def _damage():
    import fnmatch

    from musicmap import storage
    pattern, read = os.environ["MUSICMAP_DAMAGE_READ"], storage.read_bytes

    def damaged(uri, *args, **kw):
        data = read(uri, *args, **kw)
        return data[:len(data) // 2] if fnmatch.fnmatch(str(uri), pattern) else data
    storage.read_bytes = damaged


try:
    if os.environ.get("MUSICMAP_PAUSE_AFTER"):
        _pause()
    if os.environ.get("MUSICMAP_DAMAGE_READ") and os.environ.get("RANK") == os.environ.get("MUSICMAP_DAMAGE_RANK"):
        _damage()
except ImportError:                     # a Python without the project (pip, tools): no hook
    pass
