"""RecBole's ml-100k atomic files -> the generic table of ratings_to_mpd.py (CSV, standard library).

    python ml100k_table.py DIR_WITH_ml-100k.inter_AND_.item OUT.csv
"""
import csv
import sys


def main(src: str, out: str) -> None:
    items = {}
    with open(f"{src}/ml-100k.item", encoding="utf-8") as f:
        next(f)
        for line in f:
            iid, title, year, genres = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
            year = year if year.isdigit() else "unknown"
            genre = genres.split(" ")[0] if genres else "unknown"
            decade = year[:3] + "0s" if year != "unknown" else "unknown"
            items[iid] = (title or None, f"{genre} {decade}", year)
    n = 0
    with open(f"{src}/ml-100k.inter", encoding="utf-8") as f, open(out, "w", newline="") as o:
        w = csv.writer(o)
        w.writerow(["user_id", "item_id", "timestamp", "item_name", "artist_name", "album_name"])
        next(f)
        for line in f:
            uid, iid, _rating, ts = line.rstrip("\n").split("\t")
            name, artist, album = items.get(iid, (None, "unknown unknown", "unknown"))
            w.writerow([uid, iid, int(float(ts)), name or f"item {iid}", artist, album])
            n += 1
    print(f"table: {n} rows -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
