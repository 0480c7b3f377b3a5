"""Storage over fsspec: plain paths, file://, s3:// (s3fs), gs:// (gcsfs, when installed).

Every stage output is committed atomically:

    out = StageWriter("s3://bucket/mm/graph")      # data goes under graph/v-<time>-<id>/
    write_parquet(table, out.path("edges", "part-00000.parquet"))
    out.commit({"rows": 123})                      # claims the base (one exclusive PUT), then _SUCCESS

    graph = open_committed("s3://bucket/mm/graph") # refuses an output that was never committed
    read_parquet(graph.path("edges"))

A committed output is a version folder named by a commit record (head(): the marker `_SUCCESS`
and the claims after it). A writer killed before commit leaves the previous version (or nothing)
visible. A commit keeps the newest storage.keep_versions committed versions (a reader that opened
one reads it to the end) and fails cleanly when another run of the stage committed since it
started (StageWriter).

Endpoint and credentials come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...,
GOOGLE_APPLICATION_CREDENTIALS) or from the storage config; they are never printed or logged.
Transient errors are retried with exponential back-off; a missing bucket, missing credentials or
denied access raise StorageError with a one-line message naming the URI and what to do.
"""
from __future__ import annotations

import fnmatch
import io
import json
import logging
import os
import posixpath
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from musicmap.errors import MusicMapError
from musicmap.log import add_secret

SUCCESS = "_SUCCESS"
VERSION_PREFIX = "v-"
T = TypeVar("T")


class StorageError(MusicMapError):
    """A storage call that cannot succeed: the message names the URI and what to do."""


class NotFoundError(StorageError):
    """A file or folder that is not there."""


class NotCommittedError(StorageError):
    """A stage output with no commit marker: the stage never finished (or never ran)."""


@dataclass
class StorageOptions:
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    retries: int = 5
    retry_backoff_s: float = 0.5
    keep_versions: int = 2


_options = StorageOptions()


def configure(storage_cfg: Any = None, **kw) -> StorageOptions:
    """Set the process-wide storage options from the `storage` config section (or keywords).
    Spark executors and torchrun ranks call this with the same values as the driver."""
    global _options
    values = {}
    if storage_cfg is not None:
        src = storage_cfg if isinstance(storage_cfg, dict) else storage_cfg.to_dict()
        values = {k: v for k, v in src.items() if k in StorageOptions.__dataclass_fields__}
    values.update(kw)
    _options = StorageOptions(**values)
    add_secret(_options.s3_secret_access_key)  # masked in every log line from now on
    add_secret(_options.s3_access_key_id)
    fsspec.config.conf.pop("s3", None)
    return _options


def options_dict() -> dict:
    """The current options, for shipping to another process (contains credentials only when the
    config set them; never log it)."""
    return dict(_options.__dict__)


# ----------------------------------------------------------------------------- URIs

def join(uri: str, *parts: str) -> str:
    """uri/part/...; in a chained URI (zip://inner::s3://bucket/mpd.zip) the parts go to the
    inner path."""
    if "::" in uri:
        inner, outer = uri.split("::", 1)
        return join(inner, *parts) + "::" + outer
    out = uri.rstrip("/")
    for p in parts:
        if p:
            out = out + "/" + p.strip("/")
    return out


def protocol(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def is_local(uri: str) -> bool:
    return protocol(uri) in ("file", "local")


def _fs_kwargs(proto: str) -> dict:
    if proto in ("s3", "s3a"):
        kw: dict[str, Any] = {"client_kwargs": {}, "config_kwargs": {"retries": {"max_attempts": 3}}}
        endpoint = _options.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") \
            or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            kw["endpoint_url"] = endpoint
        region = _options.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kw["client_kwargs"]["region_name"] = region
        if _options.s3_access_key_id:
            kw["key"] = _options.s3_access_key_id
            kw["secret"] = _options.s3_secret_access_key
        return kw
    return {}


def get_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a URI. s3a:// is read as s3://."""
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://"):]
    proto = protocol(uri)
    try:
        fs, path = fsspec.core.url_to_fs(uri, **_fs_kwargs(proto))
    except ImportError as e:
        raise StorageError(f"{uri}: no filesystem for '{proto}://' is installed "
                           f"({e.__class__.__name__}); for gs:// run `pip install gcsfs`") from None
    return fs, path


# ----------------------------------------------------------------------------- errors, retries

# Transient failures, told by what they are, never by words of a message (a key may be named
# mpd.slice.503000-503999.json): HTTP statuses of a server that may answer next time, the S3 error
# codes that mean the same, and the exception types of a connection that broke or timed out.
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                   "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequestsException"}
TRANSIENT_TYPES = {"ConnectTimeoutError", "ReadTimeoutError", "EndpointConnectionError", "ConnectionClosedError",
                   "ServerDisconnectedError", "ClientOSError", "IncompleteReadError", "ResponseStreamingError",
                   "ClientConnectorError", "ServerTimeoutError"}


def _chain(e: BaseException):
    """e and the exceptions it was raised from (s3fs turns a botocore ClientError into an OSError
    whose cause it is)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _status(e: BaseException) -> tuple[int | None, str | None]:
    """(HTTP status, service error code) of a botocore ClientError or an aiohttp response error."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        meta, err = response.get("ResponseMetadata") or {}, response.get("Error") or {}
        return meta.get("HTTPStatusCode"), err.get("Code")
    status = getattr(e, "status", None)
    return (status if isinstance(status, int) else None), None


def _is_transient(e: BaseException) -> bool:
    for x in _chain(e):
        if type(x).__name__ in TRANSIENT_TYPES or isinstance(x, (ConnectionError, TimeoutError)):
            return True
        status, code = _status(x)
        if status in TRANSIENT_STATUS or code in TRANSIENT_CODES:
            return True
    return False


def _translate(e: BaseException, uri: str) -> BaseException:
    """A one-line StorageError for the permanent failures a user can fix, else `e` itself."""
    name = type(e).__name__
    text = str(e)
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return StorageError(f"{uri}: no cloud credentials found; set AWS_ACCESS_KEY_ID and "
                            f"AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run on a machine with an "
                            f"instance role")
    if "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text or "ExpiredToken" in text:
        return StorageError(f"{uri}: the storage service rejected the credentials (invalid or "
                            f"expired key); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if isinstance(e, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return StorageError(f"{uri}: access denied; grant this identity read/write on the "
                            f"bucket prefix (see infra/terraform IAM roles)")
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return StorageError(f"{uri}: bucket does not exist; create it (infra/terraform) or fix "
                            f"storage.root")
    if isinstance(e, FileNotFoundError):
        return NotFoundError(f"{uri}: not found")
    return e


def call(uri: str, fn: Callable[[], T], what: str = "") -> T:
    """Run a storage call with retries on transient errors and clear errors on permanent ones."""
    attempts = max(1, _options.retries)
    for attempt in range(attempts):
        try:
            return fn()
        except MusicMapError:
            raise
        except Exception as e:  # noqa: BLE001 - classified below
            if _is_transient(e) and attempt + 1 < attempts:
                delay = _options.retry_backoff_s * (2 ** attempt) * (0.5 + random.random())
                _log().warning("storage: transient %s on %s (%s); retry %d/%d in %.1fs",
                               type(e).__name__, uri, what, attempt + 1, attempts - 1, delay)
                time.sleep(delay)
                continue
            err = _translate(e, uri)
            if err is e:
                raise
            raise err from None
    raise AssertionError("unreachable")


def _log():
    return logging.getLogger("musicmap.storage")


# ----------------------------------------------------------------------------- files

def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return call(uri, lambda: fs.exists(path), "exists")


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    return call(uri, lambda: fs.cat_file(path), "read")


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically: readers see the old file or the new one, never a part.
    (Object stores make a single PUT atomic; locally we write a temporary file and rename.)"""
    fs, path = get_fs(uri)
    if is_local(uri):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    call(uri, lambda: fs.pipe_file(path, data), "write")


def write_json(uri: str, obj: Any) -> None:
    write_bytes(uri, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def listdir(uri: str) -> list[str]:
    """Names (not paths) directly under uri; [] when it does not exist."""
    fs, path = get_fs(uri)

    def ls():
        try:
            return fs.ls(path, detail=False, refresh=True) if not is_local(uri) else fs.ls(path, detail=False)
        except FileNotFoundError:
            return _missing_folder(uri, fs, path)
    return sorted(posixpath.basename(p.rstrip("/")) for p in call(uri, ls, "list"))


def _missing_folder(uri: str, fs, path: str) -> list:
    """[] for a folder that is not there, a StorageError when its bucket is not there either."""
    if not is_local(uri) and "::" not in uri and not fs.exists(path.split("/", 1)[0]):
        raise StorageError(f"{uri}: bucket does not exist; create it (infra/terraform) or "
                           f"fix storage.root") from None
    return []


def _token(entry: dict) -> str | None:
    """What changes when a file is rewritten: its ETag on an object store, else its mtime."""
    for k in ("ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "updated"):
        if entry.get(k) is not None:
            return str(entry[k])
    return None


def list_entries(uri: str) -> list[dict]:
    """{name, type ('file'/'directory'), size, token} of each entry directly under uri; [] when
    it does not exist."""
    fs, path = get_fs(uri)

    def ls():
        try:
            kw = {} if is_local(uri) else {"refresh": True}
            return fs.ls(path, detail=True, **kw)
        except FileNotFoundError:
            return _missing_folder(uri, fs, path)
    out = [{"name": posixpath.basename(e["name"].rstrip("/")), "type": e.get("type", "file"),
            "size": e.get("size"), "token": _token(e)} for e in call(uri, ls, "list")]
    return sorted(out, key=lambda e: e["name"])


def file_info(uri: str) -> dict | None:
    """{size, token} of a file, None when it is gone."""
    fs, path = get_fs(uri)

    def info():
        try:
            return fs.info(path)
        except FileNotFoundError:
            return None
    e = call(uri, info, "stat")
    return None if e is None else {"size": e.get("size"), "token": _token(e), "type": e.get("type", "file")}


def glob(uri: str, pattern: str) -> list[str]:
    """Full URIs of the files under `uri` whose names match `pattern`, sorted."""
    return [join(uri, n) for n in listdir(uri) if fnmatch.fnmatch(n, pattern)]


def remove(uri: str, recursive: bool = True) -> None:
    fs, path = get_fs(uri)

    def rm():
        try:
            fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass
    call(uri, rm, "remove")


# ----------------------------------------------------------------------------- parquet

def write_parquet(table, uri: str, **kw) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=kw.pop("compression", "zstd"), **kw)
    data = buf.getvalue()
    if is_local(uri):
        _, path = get_fs(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    else:
        fs, path = get_fs(uri)
        call(uri, lambda: fs.pipe_file(path, data), "write parquet")


def read_parquet(uri: str, columns: list[str] | None = None, schema=None, filters=None, pattern: str = "*"):
    """A Parquet file or a folder of part files (names starting with _ or . are skipped; with
    `pattern`, only the files whose names match). filters: [(column, op, value), ...], the
    conditions a row must all pass, applied a batch at a time as each file is read, so only
    matching rows are held (_read_filtered)."""
    fs, path = get_fs(uri)

    def read_one(p):
        with fs.open(p, "rb") as f:
            if filters:
                return _read_filtered(f, columns, schema, filters)
            return pq.read_table(f, columns=columns, schema=schema)

    def read():
        if fs.isdir(path):
            files = sorted(p for p in fs.ls(path, detail=False)
                           if p.endswith(".parquet") and not posixpath.basename(p).startswith(("_", "."))
                           and fnmatch.fnmatch(posixpath.basename(p), pattern))
            if not files:
                if schema is None:
                    raise StorageError(f"{uri}: no Parquet part files")
                return pa.Table.from_batches([], schema=schema).select(columns or schema.names)
            return pa.concat_tables([read_one(p) for p in files])
        return read_one(path)
    return call(uri, read, "read parquet")


FILTER_BATCH = 8192      # rows a filtered read decodes at a time


def _read_filtered(f, columns, schema, filters) -> pa.Table:
    """The rows of one Parquet file that pass `filters` (a list of (column, op, value)), decoded a
    batch at a time. pyarrow's own filtered read decodes a whole row group before it filters, and
    at the MPD's size the graph's eval file is one row group of GBs, read by every rank."""
    pf = pq.ParquetFile(f)
    full = schema or pf.schema_arrow
    names = columns or full.names
    out = pa.schema([full.field(n) for n in names])
    need = list(dict.fromkeys([*names, *(c for c, _, _ in filters)]))
    keep = pq.filters_to_expression(filters)
    parts = [pa.Table.from_batches([b]).filter(keep).select(names).cast(out)
             for b in pf.iter_batches(FILTER_BATCH, columns=need)]
    return pa.concat_tables(parts) if parts else out.empty_table()


# ----------------------------------------------------------------------------- atomic stage outputs

def new_version() -> str:
    """v-<UTC time to the microsecond>-<random>: names sort in the order the versions began."""
    return f"{VERSION_PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"


CLAIMS = "_claims"
WRITER = "_writer.json"     # in each version folder: the version it was started from
NONE = "none"               # the base of a stage's first commit
RESERVED = ("version", "seq", "base", "history", "committed_at")


class CommitConflict(StorageError):
    """Another run of the same stage committed while this one was writing."""


def create_exclusive(uri: str, data: bytes) -> bool:
    """Write a new file only if there is none: True when this call created it, False when it was
    there. One call wins however many race, and a reader never sees the file in part (locally a
    whole temporary file hard-linked into place, which fails if the name exists; a conditional PUT
    on S3). A PUT whose response was lost is retried and then answers False: callers that must
    know read the file back (StageWriter._claim)."""
    fs, path = get_fs(uri)
    if is_local(uri):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    def put():
        try:
            fs.pipe_file(path, data, mode="create")
            return True
        except FileExistsError:
            return False
        except TypeError:          # a filesystem without exclusive writes: check, then write
            if fs.exists(path):
                return False
            fs.pipe_file(path, data)
            return True
    return call(uri, put, "create")


def _read_record(uri: str) -> dict | None:
    """A commit record (a claim or the marker), None when there is none."""
    try:
        return read_json(uri)
    except NotFoundError:
        return None


def head(uri: str) -> dict | None:
    """The newest commit record of a stage folder, None before its first commit.

    A commit is the claim `_claims/<base>` holding the record of the version committed over
    `base`; `_SUCCESS` is a copy of the newest record, written after the claim. Claims are never
    removed, so the records form one chain from `none`: start at the marker (or `none`) and follow
    the claims to the end. A commit that died between its claim and its marker is thereby seen
    (its files were complete when it claimed) and the next commit writes the marker again."""
    uri = uri.rstrip("/")
    record = _read_record(join(uri, SUCCESS))
    while True:
        nxt = _read_record(join(uri, CLAIMS, record["version"] if record else NONE))
        if nxt is None:
            return record
        record = nxt


class StageWriter:
    """Stage output written under a fresh version folder and made visible by commit().

    The writer remembers the version that was committed when it started (its base) and records
    it in its folder (`_writer.json`). commit() claims that base: it creates `_claims/<base>`
    exclusively, holding this version's commit record, and that claim is the commit. Of two runs
    that started from the same base the first to claim wins and the other fails with
    CommitConflict, its own folder left uncommitted; since claims are never removed, a run whose
    base was claimed by another can never commit, whenever it tries. Then the marker `_SUCCESS`
    is written (a copy of the record, for readers: see head()) and what is no longer needed goes:
    committed versions more than `keep` commits old (a reader that opened one of the newest `keep`
    reads it to the end) and the folders of runs that can no longer commit (their base was
    claimed by another). A folder whose run may still commit is never removed, whatever its age."""

    def __init__(self, uri: str, version: str | None = None, keep: int | None = None):
        self.uri = uri.rstrip("/")
        self.version = version or new_version()
        self.prefix = join(self.uri, self.version)
        self.keep = max(1, keep if keep is not None else _options.keep_versions)
        self.base = head(self.uri)
        write_json(self.path(WRITER), {"version": self.version, "base": self._base_name})

    @property
    def _base_name(self) -> str:
        return self.base["version"] if self.base else NONE

    def path(self, *parts: str) -> str:
        return join(self.prefix, *parts)

    def commit(self, info: dict | None = None) -> dict:
        """Claim the base (the commit), write the marker, then remove what is no longer kept."""
        record = self._claim(info)
        try:
            write_json(join(self.uri, SUCCESS), record)
        except (StorageError, OSError) as e:
            # the claim already committed this version: readers find it through the claim, and
            # the next commit writes the marker
            _log().warning("%s: committed %s, but its marker could not be written (%s); readers "
                           "find it through %s", self.uri, self.version, e, CLAIMS)
        try:
            self._prune(record)
        except (StorageError, OSError) as e:     # housekeeping: the next commit prunes again
            _log().warning("%s: committed %s; removing older versions failed (%s)", self.uri, self.version, e)
        return record

    def _claim(self, info: dict | None) -> dict:
        """Create `_claims/<base>` holding this version's record; CommitConflict when another run
        holds it or this run's folder was removed."""
        base = self._base_name
        claim = join(self.uri, CLAIMS, base)
        holder = _read_record(claim)
        if holder is None and not exists(self.path(WRITER)):
            raise CommitConflict(f"{self.uri}: this run's folder {self.version} was removed while it wrote; "
                                 f"its output is not committed: rerun the stage")
        history = [self.version] + ((self.base.get("history") or [base]) if self.base else [])
        record = {**{k: v for k, v in (info or {}).items() if k not in RESERVED},
                  "version": self.version, "base": base, "seq": (self.base or {}).get("seq", 0) + 1,
                  "committed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "history": history[:self.keep]}
        if holder is None and create_exclusive(claim, (json.dumps(record, indent=2, sort_keys=True, default=str)
                                                       + "\n").encode()):
            return record
        holder = holder or read_json(claim)
        if holder.get("version") == self.version:    # our own PUT, whose response was lost
            return holder
        raise CommitConflict(f"{self.uri}: another run committed {holder.get('version')} while this one wrote "
                             f"{self.version} (both started from {base}); this run's output is not "
                             f"committed (and is removed): rerun the stage if you want it to be the newest")

    def _prune(self, record: dict) -> None:
        """Remove committed versions `keep` or more commits older than `record`, and folders whose
        run can no longer commit. Safe against any later commit: a version's age in commits
        only grows, and a claimed base stays claimed."""
        kept = set(record["history"])
        for name in listdir(self.uri):
            if name.startswith(VERSION_PREFIX) and name not in kept and self._removable(name, record, kept):
                remove(join(self.uri, name))

    def _removable(self, name: str, record: dict, kept: set[str]) -> bool:
        started = _read_record(join(self.uri, name, WRITER))
        if started is None:
            # a folder of this module's earlier releases (no _writer.json), or one whose writer
            # is creating it this instant: only by age, as those releases did
            return name < min(kept)
        claim = _read_record(join(self.uri, CLAIMS, started["base"]))
        if claim is None:
            return False                    # its run may still commit
        if claim.get("version") != name:
            return True                     # another run committed over its base
        return claim.get("seq", 0) <= record["seq"] - self.keep


@dataclass
class Committed:
    uri: str
    version: str
    info: dict

    def path(self, *parts: str) -> str:
        return join(self.uri, self.version, *parts)


def open_committed(uri: str, stage: str = "") -> Committed:
    """The committed output at uri (its newest commit, see head()), or NotCommittedError naming
    what to run."""
    uri = uri.rstrip("/")
    info = head(uri)
    if info is None:
        hint = f"; run `musicmap {stage}` first" if stage else ""
        partial = any(n.startswith(VERSION_PREFIX) for n in listdir(uri))
        why = "an unfinished or killed run left only uncommitted files" if partial else "nothing is there"
        raise NotCommittedError(f"{uri}: no committed output ({SUCCESS} missing: {why}){hint}")
    return Committed(uri, info["version"], info)


def stage_uri(cfg, stage: str) -> str:
    """URI of a stage folder: paths.<stage> when set, else <storage.root>/<stage>."""
    explicit = getattr(cfg.paths, stage)
    return explicit.rstrip("/") if explicit else join(cfg.storage.root, stage)
