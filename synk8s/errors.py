"""Errors that reach the user as one line.

The CLI prints ``str(error)`` and exits with ``error.exit_code``; no traceback is shown.
Library code raises these where the user can fix the cause (bad input, missing data,
missing credentials); programming errors stay ordinary exceptions.
"""


class Synk8sError(Exception):
    """A failure the user can act on. The message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(Synk8sError):
    """Bad command-line or config input (unknown name, bad override, bad value)."""

    exit_code = 2


class StoreError(Synk8sError):
    """The artifact store cannot be reached, or refuses, or lacks an object."""


class MissingDataError(Synk8sError):
    """Files a stage or dataset loader needs are not where they should be."""


class IntegrityError(StoreError):
    """Stored data differs from what was recorded when it was written (truncated, damaged or replaced)."""
