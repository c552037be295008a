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
