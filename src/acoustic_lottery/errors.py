"""Errors the command line turns into a one-line message instead of a traceback."""


class InputError(Exception):
    """Bad user input: the message names the file, the line or key, and what was expected."""
