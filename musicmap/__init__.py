"""Music Map: playlist continuation on the Spotify Million Playlist Dataset with LightGCN.

Shared code of the three jobs: configuration, storage, schemas, metrics, the MPD format and its
synthetic generator, and the `musicmap` command line. The Spark job and the torch side install
beside it as musicmap.spark_jobs and musicmap.train (folders spark_jobs/ and train/ in the
checkout). The shared core never imports them; only the entry points (cli.py dispatches to
their commands, demo.py runs them in order) reach into them.
"""

__version__ = "0.1.0"
