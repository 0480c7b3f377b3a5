"""Generate a synthetic Million Playlist Dataset in the exact MPD format (and a challenge set).

    musicmap synth --playlists 20000 --out demo-data/mpd [--random-seed 0] [--challenge]

The catalogue has taste communities (genres); each has artists with albums with tracks, and track
popularity is long-tailed: a mainstream share of artists carries most plays (Zipf by artist,
then by track within the artist) and the rest are niche artists whose tracks are drawn about once
each, so that, as in the real MPD, most tracks occur in one or two playlists. A playlist draws
mostly from one community, some from a second and a little from the whole catalogue, often several
tracks of one album or artist in a row, and more of the tracks released shortly before it was
made (albums come out over the years, new releases fade); its title reflects its community, with the real data's mess (case,
emoji, generic titles shared by everyone). Lengths, dates, followers and edits follow the shapes
of the real statistics. The same seed and sizes give byte-identical files; slices are generated
and written one at a time (memory is bounded by the catalogue, not by the number of playlists).

Ground truth for tests and the demo: `Catalogue(...).community_of(track_id_of(uri))`, and
`synth_info.json` next to the slices (communities with their most popular tracks).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from musicmap import mpd, storage
from musicmap.config import config_from_args
from musicmap.log import get_logger, progress

log = get_logger("synth")

SLICE_SIZE = 1000
PERIODS = 8                    # sampling tables by playlist date (track releases, see Catalogue)
TREND_FLOOR = 0.15             # a released track's weight long after release, against 1 at release
END_TS = 1509494400            # 2017-11-01 00:00 UTC: the MPD's last modified_at
START_TS = 1262304000          # 2010-01-01 00:00 UTC
CHALLENGE_PID_BASE = 1_000_000  # challenge playlists are not MPD playlists: pids from 1,000,000

# (community, title words). Sizes follow the order: earlier communities are bigger.
COMMUNITIES = [
    ("pop", ["pop", "Pop Hits", "top hits", "Today's Hits", "pop jams", "radio"]),
    ("hip hop", ["rap", "Hip Hop", "hip-hop", "RAP CAVIAR", "trap", "bars"]),
    ("country", ["country", "Country", "country music", "COUNTRY", "boots", "backroads"]),
    ("rock", ["rock", "Rock", "rock n roll", "ROCK", "guitar", "alt rock"]),
    ("edm", ["edm", "EDM", "electronic", "house", "dance", "festival"]),
    ("chill", ["chill", "Chill", "chill vibes", "relax", "lazy sunday", "calm"]),
    ("workout", ["workout", "Workout", "gym", "GYM", "running", "cardio"]),
    ("throwback", ["throwback", "Throwbacks", "90s", "2000s", "old school", "tbt"]),
    ("r&b", ["r&b", "RnB", "slow jams", "R&B", "smooth", "bedroom"]),
    ("indie", ["indie", "Indie", "indie folk", "alternative", "indie vibes", "coffee shop"]),
    ("latin", ["latin", "Latino", "reggaeton", "salsa", "fiesta", "bachata"]),
    ("christian", ["worship", "Christian", "praise", "gospel", "sunday", "faith"]),
    ("classic rock", ["classic rock", "Classic Rock", "70s", "80s", "dad rock", "oldies"]),
    ("metal", ["metal", "Metal", "METAL", "heavy", "metalcore", "headbang"]),
    ("reggae", ["reggae", "Reggae", "reggae vibes", "island", "roots", "one love"]),
    ("jazz", ["jazz", "Jazz", "smooth jazz", "bebop", "jazz cafe", "swing"]),
    ("classical", ["classical", "Classical", "piano", "study", "orchestra", "focus"]),
    ("punk", ["punk", "Punk", "pop punk", "emo", "skate", "warped tour"]),
    ("folk", ["folk", "Folk", "acoustic", "americana", "campfire", "bluegrass"]),
    ("soul", ["soul", "Soul", "motown", "funk", "groove", "classic soul"]),
    ("k-pop", ["kpop", "K-Pop", "KPOP", "bts", "korean", "idols"]),
    ("blues", ["blues", "Blues", "delta blues", "whiskey", "bluesy", "juke joint"]),
    ("disney", ["disney", "Disney", "musicals", "broadway", "kids", "soundtrack"]),
    ("lofi", ["lofi", "lo-fi", "beats", "study beats", "late night", "lofi hip hop"]),
]
GENERIC_TITLES = ["music", "my playlist", "Car", "summer", "Summer 2017", "favorites", "new",
                  "party", "Party", "mix", "good vibes", "road trip", "songs", "feels", "jams",
                  "random", "yes", "2017", "Sleep", "wedding"]
EMOJI = ["🔥", "🎶", "🌴", "💯", "☀️", "❤️", "🎧", "✨", "🌙", "🤘"]
DESCRIPTIONS = ["songs i like", "for the drive", "my favorite songs right now",
                "vibes only", "updated weekly", "a mix of everything"]
WORDS_A = ["Midnight", "Golden", "Broken", "Electric", "Silent", "Wild", "Blue", "Lost", "Sweet",
           "Neon", "Paper", "Summer", "Velvet", "Crystal", "Faded", "Burning", "Lonely", "Happy",
           "Secret", "Distant", "Falling", "Rising", "Hollow", "Shining", "Little", "Endless",
           "Northern", "Southern", "Easy", "Heavy", "Gentle", "Crazy"]
WORDS_B = ["River", "Heart", "Road", "Fire", "Dream", "Light", "Rain", "Sky", "Night", "City",
           "Love", "Ocean", "Train", "Window", "Garden", "Mirror", "Shadow", "Highway", "Moon",
           "Stars", "Song", "Letter", "Season", "Thunder", "Echo", "Storm", "Kingdom", "Island",
           "Radio", "Memory", "Horizon", "Dance"]
ARTIST_FORM = ["The {a} {b}s", "{a} {b}", "DJ {b}", "{b} & The {a}s", "Lil {b}", "{a} {b} Band",
               "MC {a}", "{b}"]

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_MOD = 62 ** 22
_URI_MULT = 0x9E3779B97F4A7C15_F39CC0605CEDC835 | 1  # odd and not a multiple of 31: invertible mod 62^22
_URI_MULT_INV = pow(_URI_MULT, -1, _B62_MOD)
_KIND_SALT = {"track": 0x5EED_7A3C, "artist": 0xA127_15F0, "album": 0xA1B0_0C4E}


def _b62(n: int) -> str:
    chars = []
    for _ in range(22):
        n, r = divmod(n, 62)
        chars.append(_B62[r])
    return "".join(reversed(chars))


def make_uri(kind: str, idx: int, random_seed: int) -> str:
    code = ((idx + 1) * _URI_MULT + _KIND_SALT[kind] * 7919 + random_seed * 104729) % _B62_MOD
    return f"spotify:{kind}:{_b62(code)}"


def id_of_uri(uri: str, random_seed: int) -> int:
    """Inverse of make_uri: the catalogue index behind a synthetic track/artist/album URI."""
    kind, code = uri.split(":")[1:]
    n = 0
    for c in code:
        n = n * 62 + _B62.index(c)
    return (n - _KIND_SALT[kind] * 7919 - random_seed * 104729) * _URI_MULT_INV % _B62_MOD - 1


def _name(i: int, salt: int) -> str:
    h = (i * 2654435761 + salt) & 0xFFFFFFFF
    return f"{WORDS_A[h % len(WORDS_A)]} {WORDS_B[(h >> 8) % len(WORDS_B)]}"


@dataclass
class Catalogue:
    """Communities -> artists -> albums -> tracks, with a popularity per track (deterministic)."""
    n_tracks: int
    n_communities: int
    random_seed: int
    exponent: float = 0.9
    niche_share: float = 0.8
    niche_mass: float = 0.22
    new_share: float = 0.5
    trend_days: float = 180.0

    def __post_init__(self):
        rng = np.random.default_rng([self.random_seed, 1])
        c = min(self.n_communities, len(COMMUNITIES))
        self.n_communities = c
        weight = 1.0 / np.arange(1, c + 1) ** 0.6
        self.community_weight = weight / weight.sum()
        sizes = np.maximum(50, np.round(self.community_weight * self.n_tracks)).astype(np.int64)
        self.community_start = np.concatenate([[0], np.cumsum(sizes)])
        self.n_tracks = int(self.community_start[-1])
        T = self.n_tracks
        self.track_community = np.repeat(np.arange(c), sizes)
        # artists: consecutive runs of a community's tracks (1 + geometric, mean ~7 tracks)
        artist_of = np.empty(T, np.int64)
        album_of = np.empty(T, np.int64)
        artist_start, artist_len, artist_comm = [], [], []
        n_art = n_alb = 0
        for ci in range(c):
            lo, hi = self.community_start[ci], self.community_start[ci + 1]
            pos = lo
            while pos < hi:
                k = int(min(hi - pos, 1 + rng.geometric(1 / 7)))
                artist_of[pos:pos + k] = n_art
                artist_start.append(pos)
                artist_len.append(k)
                artist_comm.append(ci)
                j = 0
                while j < k:  # albums of 1 + geometric(mean ~4) tracks
                    m = int(min(k - j, 1 + rng.geometric(1 / 4)))
                    album_of[pos + j:pos + j + m] = n_alb
                    n_alb += 1
                    j += m
                pos += k
                n_art += 1
        self.artist_of, self.album_of = artist_of, album_of
        self.artist_start = np.array(artist_start, np.int64)
        self.artist_len = np.array(artist_len, np.int64)
        # popularity: mainstream artists (Zipf over artists in random order x Zipf over the
        # artist's tracks) share 1 - niche_mass of a community's plays; niche artists (the
        # lowest-ranked niche_share of them) share niche_mass evenly over their tracks
        pop = np.empty(T)
        for ci in range(c):
            arts = np.nonzero(np.array(artist_comm) == ci)[0]
            rank = rng.permutation(len(arts)) + 1
            niche = rank > max(1, round((1 - self.niche_share) * len(arts)))
            for a, r in zip(arts, rank):
                s, k = artist_start[a], artist_len[a]
                pop[s:s + k] = r ** -self.exponent * (np.arange(1, k + 1) ** -0.7)
            lo, hi = self.community_start[ci], self.community_start[ci + 1]
            in_niche = np.isin(artist_of[lo:hi], arts[niche])
            w = pop[lo:hi]
            if in_niche.any() and not in_niche.all():
                w[~in_niche] *= (1 - self.niche_mass) / w[~in_niche].sum()
                w[in_niche] = self.niche_mass / in_niche.sum()
        self.popularity = pop
        self.album_start = np.concatenate([[0], np.flatnonzero(np.diff(album_of)) + 1])
        self.album_len = np.diff(np.concatenate([self.album_start, [T]]))
        self._release(rng)
        self.duration = np.exp(rng.normal(np.log(210_000), 0.25, T)).astype(np.int64)

    def _release(self, rng: np.random.Generator) -> None:
        """When each album comes out, and one sampling table per period of playlist dates.

        A `new_share` of albums is released during the MPD's years, as recently as playlists are
        made (age ~ Exp(330 days), like modified_at); the rest are older catalogue. A released
        track is drawn with weight popularity x (FLOOR + (1 - FLOOR) exp(-age / trend_days)):
        hits rise at release and fade to a floor, so the newest playlists hold the newest
        tracks, and popularity among recent playlists beats popularity over all time (as on
        real data, where the split is by time)."""
        days = (END_TS - START_TS) // 86400
        n_alb = len(self.album_start)
        new = rng.random(n_alb) < self.new_share
        age = np.minimum(rng.exponential(330, n_alb), days - 1)
        album_release = np.where(new, days - 1 - age, -np.inf)     # day index; -inf = catalogue
        self.release_day = np.repeat(album_release, self.album_len)
        q = (np.arange(PERIODS) + 0.5) / PERIODS                  # period = quantile of playlist ages
        self.period_age = np.minimum(-330 * np.log1p(-q), days - 1)[::-1]   # oldest period first
        self.community_cdf = [[] for _ in range(self.n_communities)]
        for p, page in enumerate(self.period_age):
            w = self.popularity * self.trend_weight(days - 1 - page)
            for ci in range(self.n_communities):
                lo, hi = self.community_start[ci], self.community_start[ci + 1]
                cdf = np.cumsum(w[lo:hi])
                self.community_cdf[ci].append(cdf / cdf[-1])

    def trend_weight(self, day: float) -> np.ndarray:
        """(T,) the release factor of every track on a day (0 before its album is out)."""
        age = day - self.release_day
        fade = np.where(np.isinf(age), 0.0, np.exp(-np.maximum(age, 0) / self.trend_days))
        return np.where(age < 0, 0.0, TREND_FLOOR + (1 - TREND_FLOOR) * fade)

    def period_of(self, age_days: np.ndarray) -> np.ndarray:
        """The sampling period of playlists `age_days` old (0 = oldest)."""
        edges = -330 * np.log1p(-np.arange(1, PERIODS) / PERIODS)   # ages at the period edges
        return PERIODS - 1 - np.searchsorted(edges, age_days, side="right")

    def community_of(self, track_id: int) -> int:
        return int(self.track_community[track_id])

    def community_name(self, c: int) -> str:
        return COMMUNITIES[c][0]

    def top_tracks(self, community: int, n: int = 5) -> list[int]:
        lo, hi = self.community_start[community], self.community_start[community + 1]
        return [int(lo + i) for i in np.argsort(-self.popularity[lo:hi], kind="stable")[:n]]

    def sample(self, communities: np.ndarray, periods: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One track per entry of `communities`, by popularity within that community in that
        entry's period (see _release)."""
        out = np.empty(len(communities), np.int64)
        key = communities * PERIODS + periods
        for k in np.unique(key):
            ci, p = divmod(int(k), PERIODS)
            idx = np.nonzero(key == k)[0]
            out[idx] = self.community_start[ci] + np.searchsorted(
                self.community_cdf[ci][p], rng.random(len(idx)), side="right")
        return np.minimum(out, self.community_start[communities + 1] - 1)

    # ---- names and URIs, computed on demand (nothing per track is kept in memory)
    def track(self, t: int) -> dict:
        a, al = int(self.artist_of[t]), int(self.album_of[t])
        return {"artist_name": self.artist_name(a), "track_uri": make_uri("track", t, self.random_seed),
                "artist_uri": make_uri("artist", a, self.random_seed), "track_name": _name(t, 17),
                "album_uri": make_uri("album", al, self.random_seed), "duration_ms": int(self.duration[t]),
                "album_name": _name(al, 91)}

    def artist_name(self, a: int) -> str:
        h = (a * 2246822519 + 3) & 0xFFFFFFFF
        name = ARTIST_FORM[h % len(ARTIST_FORM)].format(a=WORDS_A[(h >> 4) % len(WORDS_A)],
                                                         b=WORDS_B[(h >> 12) % len(WORDS_B)])
        return name.replace("ss ", "s ").replace("ys ", "ies ") if name.endswith("s") else name


def default_tracks(playlists: int) -> int:
    """The catalogue for `playlists` playlists: 6,000 N^0.4 tracks up to 100K playlists, then
    600K (N / 100K)^0.58. With the niche share of plays (niche_mass 0.22, spread evenly over the
    niche artists' tracks) the distinct tracks drawn then grow about as the real MPD's (476 N^0.613:
    32.8K in 1,000 playlists, 2.26M in the full 1M), within 0.84-1.14 of it from 1K to 100K
    playlists, and a few thousand playlists hold as many rare tracks as real ones. At 1M the
    first formula alone drew only ~1.5M distinct tracks: the second keeps the real growth
    (bench/bench_synth_tail.py, bench/BENCHMARKS.md)."""
    if playlists <= 100_000:
        return max(5000, int(6000 * playlists ** 0.4))
    return int(600_000 * (playlists / 100_000) ** 0.58)


class Generator:
    """Playlists slice by slice. `playlists(first_pid, n, rng)` returns MPD playlist fields as
    numpy arrays and track lists; `render_slice` writes them in the MPD's pretty-printed JSON."""

    def __init__(self, catalogue: Catalogue, focus: float = 0.6):
        self.cat = catalogue
        self.focus = focus
        self._fragment = lru_cache(maxsize=200_000)(self._fragment_uncached)

    # ---- sampling
    @staticmethod
    def lengths(n: int, rng: np.random.Generator) -> np.ndarray:
        short = rng.random(n) < 0.4
        x = np.where(short, np.exp(rng.normal(np.log(21), 0.27, n)),
                     np.exp(rng.normal(np.log(90), 0.62, n))).round().astype(np.int64)
        bad = (x < mpd.MIN_TRACKS) | (x > mpd.MAX_TRACKS)
        if bad.any():
            x[bad] = Generator.lengths(int(bad.sum()), rng)
        return x

    def track_lists(self, lengths: np.ndarray, primary: np.ndarray, periods: np.ndarray,
                    rng: np.random.Generator) -> list[np.ndarray]:
        cat = self.cat
        n = len(lengths)
        secondary = rng.choice(cat.n_communities, n, p=cat.community_weight)
        draw = (lengths * 2).astype(np.int64) + 8        # oversample, then keep the first unique
        owner = np.repeat(np.arange(n), draw)
        u = rng.random(len(owner))
        comm = np.where(u < self.focus, primary[owner], secondary[owner])
        glob = u >= self.focus + (1 - self.focus) * 0.75
        comm[glob] = rng.choice(cat.n_communities, int(glob.sum()), p=cat.community_weight)
        tracks = cat.sample(comm, periods[owner], rng)
        # runs: a slot takes another track of the previous slot's album (15%) or artist (20%)
        start = np.concatenate([[0], np.cumsum(draw)[:-1]])
        u = rng.random(len(tracks))
        u[start] = 1.0
        for share, lo, group_start, group_len in ((0.15, 0.0, cat.album_start, cat.album_len),
                                                  (0.20, 0.15, cat.artist_start, cat.artist_len)):
            idx = np.nonzero((u >= lo) & (u < lo + share))[0]
            g = (cat.album_of if group_start is cat.album_start else cat.artist_of)[tracks[idx - 1]]
            tracks[idx] = group_start[g] + (rng.random(len(idx)) * group_len[g]).astype(np.int64)
        out = []
        for i in range(n):
            seg = tracks[start[i]:start[i] + draw[i]]
            _, first = np.unique(seg, return_index=True)
            keep = seg[np.sort(first)][:lengths[i]]
            if len(keep) < lengths[i]:  # a small catalogue ran out of distinct popular tracks
                keep = self._top_up(keep, int(lengths[i]), int(periods[i]), rng)
            if rng.random() < 0.01 and len(keep) > 5:   # the real data repeats a track now and then
                keep = np.insert(keep, int(rng.integers(1, len(keep))), keep[int(rng.integers(0, len(keep)))])[:mpd.MAX_TRACKS]
            out.append(self._fix_diversity(keep, rng))
        return out

    def _top_up(self, tracks: np.ndarray, n: int, period: int, rng) -> np.ndarray:
        """Extend to n distinct tracks, drawn by popularity from the other communities."""
        cat = self.cat
        have, out = set(tracks.tolist()), tracks.tolist()
        while len(out) < n:
            comm = rng.choice(cat.n_communities, 2 * (n - len(out)) + 8, p=cat.community_weight)
            for t in cat.sample(comm, np.full(len(comm), period), rng).tolist():
                if t not in have and len(out) < n:
                    have.add(t)
                    out.append(t)
        return np.array(out, np.int64)

    def _fix_diversity(self, tracks: np.ndarray, rng) -> np.ndarray:
        """The MPD requires >= 3 artists and >= 2 albums: swap tail tracks for random ones."""
        cat = self.cat
        j = len(tracks) - 1
        while (len(np.unique(cat.artist_of[tracks])) < mpd.MIN_ARTISTS
               or len(np.unique(cat.album_of[tracks])) < mpd.MIN_ALBUMS):
            cand = int(rng.integers(0, cat.n_tracks))
            if cand not in tracks:
                tracks[j] = cand
                j -= 1
        return tracks

    def title(self, community: int, rng: np.random.Generator) -> str:
        r = rng.random()
        if r < 0.2:
            t = GENERIC_TITLES[int(rng.integers(len(GENERIC_TITLES)))]
        else:
            words = COMMUNITIES[community][1]
            t = words[min(int(rng.geometric(0.45)) - 1, len(words) - 1)]
        r = rng.random()
        if r < 0.08:
            t = t.upper()
        elif r < 0.2:
            t = t.lower()
        elif r < 0.26:
            t = t.title()
        if rng.random() < 0.08:
            t = f"{t} {EMOJI[int(rng.integers(len(EMOJI)))]}"
        if rng.random() < 0.03:
            t = f"{t}!!"
        return t

    def playlists(self, first_pid: int, n: int, rng: np.random.Generator, end_ts: int = END_TS) -> list[dict]:
        cat = self.cat
        lengths = self.lengths(n, rng)
        primary = rng.choice(cat.n_communities, n, p=cat.community_weight)
        days = (end_ts - START_TS) // 86400
        age = np.minimum(rng.exponential(330, n), days - 1).astype(np.int64)  # skewed to 2017
        modified = end_ts - 86400 - age * 86400
        tracks = self.track_lists(lengths, primary, cat.period_of(age), rng)
        followers = np.where(rng.random(n) < 0.75, 1,
                             1 + np.minimum(rng.pareto(1.1, n) * 2, 70_000).astype(np.int64) + 1)
        out = []
        for i in range(n):
            t = tracks[i]
            p = {"name": self.title(int(primary[i]), rng)}
            if rng.random() < 0.019:
                p["description"] = DESCRIPTIONS[int(rng.integers(len(DESCRIPTIONS)))]
            p.update({
                "collaborative": "true" if rng.random() < 0.023 else "false",
                "pid": first_pid + i,
                "modified_at": int(modified[i]),
                "num_tracks": len(t),
                "num_albums": int(len(np.unique(cat.album_of[t]))),
                "num_followers": int(followers[i]),
                "tracks": t,                      # catalogue ids; rendered by render_slice
                "num_edits": int(1 + rng.poisson(0.6 + len(t) / 30)),
                "duration_ms": int(cat.duration[t].sum()),
                "num_artists": int(len(np.unique(cat.artist_of[t]))),
            })
            out.append(p)
        return out

    # ---- rendering (the MPD's indented JSON, written by hand: json.dumps(indent=) is slow)
    def _fragment_uncached(self, t: int) -> str:
        tr = self.cat.track(t)
        body = ",\n".join(f'                    "{k}": {json.dumps(tr[k], ensure_ascii=False)}'
                          for k in ("artist_name", "track_uri", "artist_uri", "track_name",
                                    "album_uri", "duration_ms", "album_name"))
        return '                {\n                    "pos": %d,\n' + body.replace("%", "%%") + "\n                }"

    def render_tracks(self, tracks, positions=None) -> str:
        frag = self._fragment
        if positions is None:
            positions = range(len(tracks))
        return ",\n".join(frag(int(t)) % int(pos) for pos, t in zip(positions, tracks))

    def render_playlist(self, p: dict) -> str:
        lines = []
        for k, v in p.items():
            if k == "tracks":
                lines.append('            "tracks": [\n' + self.render_tracks(v) + "\n            ]")
            else:
                lines.append(f'            "{k}": {json.dumps(v, ensure_ascii=False)}')
        return "        {\n" + ",\n".join(lines) + "\n        }"

    def render_slice(self, playlists: list[dict], first: int, last: int, generated_on: str) -> str:
        info = (f'    "info": {{\n        "generated_on": "{generated_on}",\n'
                f'        "slice": "{first}-{last}",\n        "version": "v1"\n    }}')
        body = ",\n".join(self.render_playlist(p) for p in playlists)
        return "{\n" + info + ',\n    "playlists": [\n' + body + "\n    ]\n}\n"


def generate(out: str, playlists: int, random_seed: int = 0, tracks: int | None = None,
             communities: int = 24, focus: float = 0.6, exponent: float = 0.9,
             niche_share: float = 0.8, niche_mass: float = 0.22,
             challenge_per_category: int = 0, show_progress: bool = True,
             new_share: float = 0.5, trend_days: float = 180.0) -> dict:
    """Write ceil(playlists / 1000) slices (and optionally a challenge set) under `out`
    (defaults: those of conf/default.yaml's synth section)."""
    t0 = time.time()
    cat = Catalogue(tracks or default_tracks(playlists), communities, random_seed, exponent, niche_share,
                  niche_mass, new_share, trend_days)
    gen = Generator(cat, focus)
    generated_on = "2017-12-03T08:41:42.057563"
    nbytes = 0
    n_slices = (playlists + SLICE_SIZE - 1) // SLICE_SIZE
    for s in progress(range(n_slices), desc="synth", unit="slice", disable=not show_progress):
        first = s * SLICE_SIZE
        n = min(SLICE_SIZE, playlists - first)
        rng = np.random.default_rng([random_seed, 2, s])
        data = gen.render_slice(gen.playlists(first, n, rng), first, first + n - 1, generated_on)
        raw = data.encode("utf-8")
        storage.write_bytes(storage.join(out, mpd.slice_name(first, first + SLICE_SIZE - 1)), raw)
        nbytes += len(raw)
    info = {"random_seed": random_seed, "playlists": playlists, "slices": n_slices, "catalog_tracks": cat.n_tracks,
            "communities": [{"id": c, "name": cat.community_name(c),
                             "top_tracks": [make_uri("track", t, random_seed) for t in cat.top_tracks(c)]}
                            for c in range(cat.n_communities)],
            "sizes": {"tracks": tracks, "communities": communities, "focus": focus, "exponent": exponent,
                      "niche_share": niche_share, "niche_mass": niche_mass, "new_share": new_share,
                      "trend_days": trend_days}}
    if challenge_per_category:
        info["challenge"] = write_challenge(out, gen, challenge_per_category, random_seed)
    storage.write_json(storage.join(out, "synth_info.json"), info)
    secs = time.time() - t0
    log.info("wrote %d playlists in %d slices (%.0f MB) to %s in %.1fs (%.0f playlists/s)",
             playlists, n_slices, nbytes / 1e6, out, secs, playlists / max(secs, 1e-9))
    return {**info, "bytes": nbytes, "seconds": secs}


def write_challenge(out: str, gen: Generator, per_category: int, random_seed: int) -> dict:
    """challenge_set.json in the real format, and its held-out tracks in
    challenge_holdouts.json (for scoring a submission)."""
    rng = np.random.default_rng([random_seed, 3])
    cat = gen.cat
    playlists, holdouts = [], []
    pid = CHALLENGE_PID_BASE
    for category in mpd.CHALLENGE_CATEGORIES:
        made = 0
        while made < per_category:
            for p in gen.playlists(pid, per_category * 2, rng):
                if made == per_category or p["num_tracks"] < category.min_tracks:
                    continue
                t = p["tracks"]
                if category.random:
                    seeds = np.sort(rng.choice(len(t), category.seeds, replace=False))
                else:
                    seeds = np.arange(category.seeds)
                mask = np.zeros(len(t), bool)
                mask[seeds] = True
                entry = {"pid": pid}
                if category.title:
                    entry["name"] = p["name"]
                entry.update({"num_tracks": len(t), "num_samples": int(category.seeds),
                              "num_holdouts": int(len(t) - category.seeds), "tracks": (t[mask], seeds)})
                playlists.append(entry)
                held = t[~mask]
                holdouts.append({"pid": pid, "category": category.name,
                                 "tracks": [make_uri("track", int(x), random_seed) for x in held],
                                 "artists": [make_uri("artist", int(cat.artist_of[x]), random_seed) for x in held]})
                pid += 1
                made += 1
    body = []
    for e in playlists:
        fields = []
        for k, v in e.items():
            if k == "tracks":
                rendered = gen.render_tracks(*v)
                fields.append('            "tracks": [\n' + rendered + "\n            ]" if len(v[0])
                              else '            "tracks": []')
            else:
                fields.append(f'            "{k}": {json.dumps(v, ensure_ascii=False)}')
        body.append("        {\n" + ",\n".join(fields) + "\n        }")
    text = ('{\n    "date": "2018-01-16 08:47:28.198015",\n    "version": "v1",\n'
            '    "playlists": [\n' + ",\n".join(body) + "\n    ]\n}\n")
    storage.write_bytes(storage.join(out, "challenge_set.json"), text.encode("utf-8"))
    storage.write_json(storage.join(out, "challenge_holdouts.json"), {"playlists": holdouts})
    return {"playlists": len(playlists), "per_category": per_category}


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("--playlists", type=int, help="playlists to generate (synth.playlists)")
    p.add_argument("--out", metavar="URI", help="output folder (default: paths.mpd, i.e. <root>/mpd)")
    p.add_argument("--random-seed", "--seed", dest="random_seed", type=int, help="random seed (synth.random_seed)")
    p.add_argument("--tracks", type=int, help="catalogue size (synth.tracks)")
    p.add_argument("--challenge", action="store_true",
                   help="also write challenge_set.json and challenge_holdouts.json")


def run_cli(args) -> int:
    extra = [f"synth.{k}={v}" for k, v in (("playlists", args.playlists), ("random_seed", args.random_seed),
                                            ("tracks", args.tracks)) if v is not None]
    cfg = config_from_args(args, extra)
    s = cfg.synth
    out = args.out or storage.stage_uri(cfg, "mpd")
    info = generate(out, s.playlists, s.random_seed, s.tracks, s.communities, s.community_focus,
                    s.popularity_exponent, s.niche_share, s.niche_mass,
                    s.challenge_per_category if args.challenge else 0,
                    new_share=s.new_share, trend_days=s.trend_days)
    print(f"synth: {info['playlists']:,} playlists in {info['slices']} slices "
          f"({info['bytes'] / 1e6:,.0f} MB) written to {out}"
          + (f", challenge set of {info['challenge']['playlists']:,} playlists" if "challenge" in info else ""))
    return 0
