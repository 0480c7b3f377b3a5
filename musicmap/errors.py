"""Errors a user can act on. The command line prints them as one line (no stack trace)."""
import sys

from musicmap.log import redact


class MusicMapError(Exception):
    """Base of every error that the command line reports as `musicmap: error: <message>`."""


class InputError(MusicMapError):
    """Bad input data: the message names the file and the problem."""


def exit_status(run, prog: str) -> int:
    """run()'s exit status, or 2 after a MusicMapError, which is printed to stderr as one line
    `<prog>: error: <message>` with any secret masked. Every entry point (the musicmap command,
    build_graph.py under spark-submit, the torchrun workers) reports errors through this."""
    try:
        return int(run() or 0)
    except MusicMapError as e:
        print(redact(f"{prog}: error: {e}"), file=sys.stderr)
        return 2
