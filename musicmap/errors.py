"""Errors a user can act on. The command line prints them as one line (no stack trace)."""


class MusicMapError(Exception):
    """Base of every error that the command line reports as `musicmap: error: <message>`."""


class InputError(MusicMapError):
    """Bad input data: the message names the file and the problem."""
