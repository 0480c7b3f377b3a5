"""Music Map: playlist continuation on the Spotify Million Playlist Dataset with LightGCN.

Shared code of the three jobs: configuration, storage, schemas, metrics, the MPD format and its
synthetic generator, and the `musicmap` command line.
"""

__version__ = "0.1.0"
