"""The one exception type for user mistakes.

Anything a user can get wrong (a config key, a path, a variant name) raises :class:`UserError` with one
line that names the offending file/key and what was expected. The CLI turns it into
``ssnas: error: <message>`` and exit status 2; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in user input: reported as one line, exit status 2."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)


def check_version(version, newest: int, what: str) -> None:
    """A file's ``version`` field is an integer this ssnas reads (``what`` names the file and its kind); a
    crafted or damaged one is one line, not int()'s ValueError."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise UserError(f"{what} version {version!r}, expected an integer")
    if version > newest:
        raise UserError(f"{what} version {version} is newer than this ssnas ({newest})")


def one_line(exc: UserError) -> UserError:
    """A UserError raised in a DataLoader worker reaches the main process with the worker's whole traceback
    as its text (torch re-raises it that way): keep the last line, the one-line message."""
    lines = str(exc).strip().splitlines()
    if len(lines) < 2:
        return exc
    kind, _, message = lines[-1].partition(": ")
    return type(exc)(message if kind.endswith(type(exc).__name__) else lines[-1])
