"""A test hook, loaded only by processes started with this folder on PYTHONPATH (Python imports
sitecustomize at start-up): with MUSICMAP_PAUSE_AFTER=<fnmatch pattern> and
MUSICMAP_PAUSE_MARKER=<path>, the first storage write of a file matching the pattern completes,
touches the marker and then hangs, so a test can kill the stage exactly while it writes its
output (Spark's Python workers start with the same environment, so they pause too)."""
import os

if os.environ.get("MUSICMAP_PAUSE_AFTER"):
    import fnmatch
    import time
    from pathlib import Path

    def _install():
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
    try:
        _install()
    except ImportError:                     # a Python without the project (pip, tools): no hook
        pass
