"""Music Map: playlist continuation on the Spotify Million Playlist Dataset with LightGCN.

    import musicmap
    mm = musicmap.load("demo-data")        # the committed stages under a storage root
    mm.recommend(seed_tracks=[...], title="road trip", k=10); mm.similar("spotify:track:...")

The package holds the shared core (config, storage, schemas, metrics, the MPD format and its
generator, the `musicmap` command line) and, each in its own subpackage, the three jobs and the
tools around them: spark_jobs (the graph build), train (the trainer), recommend (the batch
recommend job and the re-ranker) and tools (evaluate, tune, map). The core never imports the jobs;
only the entry points (cli.py, demo.py, api.py) reach into them.
"""

__version__ = "0.1.0"


def load(root: str, config: str | None = None, overrides: list[str] = ()):
    """The committed stages under `root`, as one object with recommend() and similar()
    (musicmap.api.MusicMap)."""
    # Imported here: musicmap.api loads torch and the recommend job (1.8 s, python -X importtime), and every
    # command and Spark executor imports this package.
    from musicmap.api import load as load_root
    return load_root(root, config, overrides)
