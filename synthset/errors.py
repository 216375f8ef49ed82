"""The one exception type the CLI turns into a one-line error.

Bad input (a recipe key, a class name, a model path) must reach the user as a single line that names the
field, file or class at fault. Code that detects such a problem raises `SynthsetError` with that line;
anything else is a bug and keeps its traceback.
"""


class SynthsetError(Exception):
    """A problem with the user's input or run directory, described in one line."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type name), for a one-line report."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
