"""The one exception type a user sees.

Anything raised as :class:`AetoolError` is a problem with the user's input or
environment (a missing file, a corrupt bundle, an impossible option).  The CLI
prints its message as a single line and exits non-zero; every other exception
is a bug and keeps its traceback.
"""


class AetoolError(Exception):
    """A user-facing error whose message is one clear line."""


class UsageError(AetoolError):
    """A bad option value or combination: the CLI answers with Click's usage message and exit 2."""
