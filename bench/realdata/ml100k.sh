#!/usr/bin/env bash
# A second real data set in the exact MPD format, beside ../shared/realdata/movielens_small.sh:
# MovieLens 100K (943 users, 1,682 movies, 100,000 ratings, 1997-98), shipped inside the PyPI
# package recbole==1.2.1 as its example data set. One playlist per user, mapped as the shared
# script maps MovieLens latest-small (track = movie, artist = first genre + decade, album =
# release year, every rating an occurrence in time order).
#
#   bench/realdata/ml100k.sh OUT_DIR        -> OUT_DIR/mpd.slice.0-999.json
#
# Needs PyPI once (the wheel is cached under ${MUSICMAP_DATA_CACHE:-~/.cache/musicmap-realdata})
# and the shared converter ratings_to_mpd.py (MUSICMAP_REALDATA, default ../shared/realdata).
set -euo pipefail
out=${1:?usage: ml100k.sh OUT_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
shared=${MUSICMAP_REALDATA:-$here/../../../shared/realdata}
cache=${MUSICMAP_DATA_CACHE:-$HOME/.cache/musicmap-realdata}
py=${PYTHON:-python3}
mkdir -p "$cache"
if ! ls "$cache"/whl/recbole-1.2.1-*.whl >/dev/null 2>&1; then
  "$py" -m pip download -q --no-deps recbole==1.2.1 -d "$cache/whl"
fi
unzip -j -o -q "$cache"/whl/recbole-1.2.1-*.whl \
  recbole/dataset_example/ml-100k/ml-100k.inter recbole/dataset_example/ml-100k/ml-100k.item -d "$cache/ml-100k"
"$py" "$here/ml100k_table.py" "$cache/ml-100k" "$cache/ml100k.csv"
"$py" "$shared/ratings_to_mpd.py" "$cache/ml100k.csv" "$out"
