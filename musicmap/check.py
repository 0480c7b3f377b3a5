"""Check MPD slices against the dataset's own validity rules and print its official statistics.

    musicmap check demo-data/mpd           (any storage URI; exit status 1 on any violation)

Streams the `mpd.slice.*.json` files one at a time. Every violation is printed as
`<file>: pid <pid>: <rule>: <detail>` (pid `-` for a file that cannot be read at all), then the
statistics of the valid playlists in the layout of the MPD's stats file.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from musicmap import mpd, storage
from musicmap.config import config_from_args
from musicmap.inputs import list_inputs, read_slice_file
from musicmap.log import get_logger, progress

log = get_logger("check")


@dataclass
class Report:
    files: int = 0
    bad_files: int = 0
    playlists: int = 0                  # playlists read from readable files
    valid_playlists: int = 0
    occurrences: int = 0                # tracks of valid playlists
    bytes: int = 0
    with_description: int = 0
    violations: list[tuple[str, object, str, str]] = field(default_factory=list)  # file, pid, rule, detail
    folder: str = ""                    # where the slices were found (uri, or its data/)
    ignored: list[str] = field(default_factory=list)  # entries beside them that are not slices
    tracks: Counter = field(default_factory=Counter)
    artists: Counter = field(default_factory=Counter)
    albums: set = field(default_factory=set)
    titles: Counter = field(default_factory=Counter)
    norm_titles: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def rule_counts(self) -> Counter:
        return Counter(v[2] for v in self.violations)


def slice_files(uri: str) -> list[str]:
    """The URIs of the slice files at uri (musicmap.inputs.list_inputs), in pid order."""
    return [f.uri for f in list_inputs(uri).slices]


def check(uri: str, show_progress: bool = True) -> Report:
    t0 = time.time()
    r = Report()
    pid_file: dict[int, str] = {}
    track_name: dict[str, str] = {}
    track_label: dict[str, str] = {}
    artist_label: dict[str, str] = {}
    inputs = list_inputs(uri)
    r.folder, r.ignored = inputs.folder, inputs.ignored
    for f in progress(inputs.slices, desc="check", unit="file", disable=not show_progress):
        name = f.name
        r.files += 1
        try:
            data = read_slice_file(f)
            r.bytes += len(data)
            playlists = mpd.parse_slice(data)
        except mpd.SliceError as e:
            r.bad_files += 1
            r.violations.append((name, None, e.rule, e.detail))
            continue
        for p in playlists:
            r.playlists += 1
            pid = p.get("pid") if isinstance(p, dict) else None
            bad = mpd.validate_playlist(p)
            if isinstance(pid, int) and not isinstance(pid, bool):
                if pid in pid_file:
                    bad.append(mpd.Violation("duplicate_pid", f"pid {pid} also in {pid_file[pid]}"))
                else:
                    pid_file[pid] = name
            if not bad:
                for t in p["tracks"]:
                    uri_, tname = t["track_uri"], t["track_name"]
                    known = track_name.setdefault(uri_, tname)
                    if known != tname:
                        bad.append(mpd.Violation("track_name_conflict",
                                                 f"{uri_} is {known!r} elsewhere and {tname!r} here"))
                        break
            if bad:
                r.violations.extend((name, pid, v.rule, v.detail) for v in bad)
                continue
            r.valid_playlists += 1
            r.occurrences += len(p["tracks"])
            r.titles[p["name"]] += 1
            r.norm_titles[mpd.normalize_title(p["name"])] += 1
            r.with_description += "description" in p
            for t in p["tracks"]:
                r.tracks[t["track_uri"]] += 1
                r.artists[t["artist_uri"]] += 1
                r.albums.add(t["album_uri"])
                if t["track_uri"] not in track_label:
                    track_label[t["track_uri"]] = f"{t['track_name']} by {t['artist_name']}"
                    artist_label.setdefault(t["artist_uri"], t["artist_name"])
    r.seconds = time.time() - t0
    r.track_label, r.artist_label = track_label, artist_label  # type: ignore[attr-defined]
    return r


def format_report(r: Report, top: int = 20) -> str:
    avg = r.occurrences / r.valid_playlists if r.valid_playlists else 0.0
    lines = [
        f"number of slice files {r.files}",
        f"number of other entries ignored {len(r.ignored)}"
        + (f" ({', '.join(r.ignored[:5])}{', ...' if len(r.ignored) > 5 else ''})" if r.ignored else ""),
        f"number of unreadable files {r.bad_files}",
        f"number of playlists read {r.playlists}",
        f"number of playlists {r.valid_playlists}",
        f"number of tracks {r.occurrences}",
        f"number of unique tracks {len(r.tracks)}",
        f"number of unique albums {len(r.albums)}",
        f"number of unique artists {len(r.artists)}",
        f"number of unique titles {len(r.titles)}",
        f"number of playlists with descriptions {r.with_description}",
        f"number of unique normalized titles {len(r.norm_titles)}",
        f"avg playlist length {avg:.6f}",
        "",
        "top playlist titles",
        *(f"{n:8d} {t}" for t, n in r.norm_titles.most_common(top)),
        "",
        "top tracks",
        *(f"{n:8d} {r.track_label[u]}" for u, n in r.tracks.most_common(top)),
        "",
        "top artists",
        *(f"{n:8d} {r.artist_label[u]}" for u, n in r.artists.most_common(top)),
        "",
    ]
    counts = r.rule_counts()
    if r.violations:
        lines.append(f"VIOLATIONS: {len(r.violations)} ("
                     + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
    else:
        lines.append(f"no violations: {r.files} files, {r.valid_playlists} playlists "
                     f"({r.bytes / 1e6:,.0f} MB in {r.seconds:.1f}s)")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("uri", nargs="?", help="folder (or one slice file) to check; default paths.mpd")
    p.add_argument("--top", type=int, default=20, help="rows of the top-titles/tracks/artists lists")


def run_cli(args) -> int:
    cfg = config_from_args(args)
    uri = args.uri or storage.stage_uri(cfg, "mpd")
    r = check(uri)
    if r.folder.rstrip("/") != uri.rstrip("/") and not uri.endswith((".json", ".json.gz")):
        print(f"reading the slices in {r.folder}")
    for file, pid, rule, detail in r.violations:
        print(f"{file}: pid {'-' if pid is None else pid}: {rule}: {detail}")
    print(format_report(r, args.top))
    sys.stdout.flush()
    return 0 if r.ok else 1
