"""The MPD slices as users have them, found and read the same way by `musicmap check` and by
build-graph: a folder of `mpd.slice.*.json` files, the MPD as it unzips (a folder whose `data/`
holds the slices beside README.md, src/, md5sums), slices stored gzipped (`.json.gz`), or one
slice file. Anything else in the folder (other files, folders named like slices) is ignored and
counted.

    inputs = list_inputs("s3://bucket/mpd")        # .slices (in pid order), .ignored, .folder
    data = read_slice_file(inputs.slices[0])       # the JSON bytes, or mpd.SliceError

A slice is read with what its listing said: a file that is gone, or whose size or ETag/mtime
differs from the listing when it is read (an object store overwritten during the job), is a
file-level error (rule `vanished` or `changed_during_read`) instead of a silently different
graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from musicmap import mpd, storage
from musicmap.errors import InputError


@dataclass(frozen=True)
class SliceFile:
    uri: str
    name: str
    size: int | None = None     # bytes at listing (None: the store did not say)
    token: str | None = None    # ETag or mtime at listing


@dataclass
class Inputs:
    folder: str
    slices: list[SliceFile]
    ignored: list[str] = field(default_factory=list)   # names that are not slice files


def _is_slice(name: str) -> bool:
    return bool(mpd.SLICE_RE.fullmatch(name))


def _scan(uri: str) -> Inputs:
    entries = storage.list_entries(uri)
    slices = [SliceFile(storage.join(uri, e["name"]), e["name"], e["size"], e["token"])
              for e in entries if e["type"] == "file" and _is_slice(e["name"])]
    ignored = [e["name"] + ("/" if e["type"] != "file" else "") for e in entries
               if not (e["type"] == "file" and _is_slice(e["name"]))]
    slices.sort(key=lambda f: mpd.slice_sort_key(f.name))
    return Inputs(uri, slices, ignored)


def list_inputs(uri: str) -> Inputs:
    """The slice files at uri: one file, a folder of slices, or a folder whose data/ holds them."""
    uri = uri.rstrip("/")
    name = uri.rsplit("/", 1)[-1]
    if name.endswith((".json", ".json.gz")):
        info = storage.file_info(uri)
        if info is None or info["type"] != "file":
            raise InputError(f"{uri}: no such file")
        return Inputs(uri.rsplit("/", 1)[0], [SliceFile(uri, name, info["size"], info["token"])])
    found = _scan(uri)
    if found.slices:
        return found
    data = storage.join(uri, "data")
    if "data/" in found.ignored:
        inner = _scan(data)
        if inner.slices:
            inner.ignored = [f"../{n}" for n in found.ignored if n != "data/"] + inner.ignored
            return inner
    where = f"{uri} or {data}" if "data/" in found.ignored else uri
    there = (f" (it holds {len(found.ignored)} other entries, e.g. {', '.join(found.ignored[:3])})"
             if found.ignored else "" if storage.file_info(uri) else ": it does not exist")
    raise InputError(f"no mpd.slice.*.json (or .json.gz) files in {where}{there}"
                     + "; point at the MPD's data/ folder (or the folder it unzipped to), "
                       "or generate slices with `musicmap synth`")


def read_slice_file(f: SliceFile) -> bytes:
    """The decompressed JSON bytes of a listed slice, or mpd.SliceError (vanished,
    changed_during_read, bad_compression)."""
    try:
        raw = storage.read_bytes(f.uri)
    except storage.NotFoundError:
        raise mpd.SliceError("vanished", "listed, but gone when read") from None
    except IsADirectoryError:
        raise mpd.SliceError("vanished", "listed as a file, a folder when read") from None
    now = storage.file_info(f.uri)
    if f.size is not None and len(raw) != f.size:
        raise mpd.SliceError("changed_during_read", f"{f.size} bytes when listed, {len(raw)} when read")
    if now is None:
        raise mpd.SliceError("vanished", "gone right after it was read")
    if f.token is not None and now["token"] is not None and now["token"] != f.token:
        raise mpd.SliceError("changed_during_read", f"rewritten since it was listed ({f.token} -> {now['token']})")
    return mpd.decompress(f.name, raw)
