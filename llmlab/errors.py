"""User-facing errors: one short paragraph saying what was wrong and what would be right.

The CLI prints a `UserError` as its message alone (no traceback) and exits with status 2;
the traceback still goes to the job's log file.
"""


class UserError(Exception):
    """An error the user can act on (bad config value, missing data, unreachable model)."""


class CapabilityError(UserError):
    """A task asked the method for a capability it does not have."""
