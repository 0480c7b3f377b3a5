"""Logging and progress bars shared by every stage.

Log lines go to stderr as `HH:MM:SS stage: message`. A filter masks every secret the process
knows (cloud keys from the environment or the config) so no log line can carry one.
"""
from __future__ import annotations

import logging
import os
import sys

from tqdm.auto import tqdm

SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
              "GOOGLE_APPLICATION_CREDENTIALS_JSON", "MUSICMAP_SECRET")
_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Mask `value` in every log line from now on."""
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    for s in _secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = ()
        return True


def setup_logging(quiet: bool = False, rank: int | None = None) -> None:
    for name in SECRET_ENV:
        add_secret(os.environ.get(name))
    fmt = "%(asctime)s %(name)s: %(message)s" if rank is None else \
        f"%(asctime)s [rank {rank}] %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    handler.addFilter(_RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("musicmap").setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in ("py4j", "botocore", "s3fs", "aiobotocore", "fsspec", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"musicmap.{name}")


def progress(iterable=None, *, total=None, desc: str = "", unit: str = "it", disable: bool = False,
             unit_scale: bool = False):
    """A tqdm bar on stderr; redraws at most every 2 s when stderr is not a terminal."""
    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                mininterval=0.2 if tty else 2.0, dynamic_ncols=True, unit_scale=unit_scale,
                leave=tty)
