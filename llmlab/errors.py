"""User-facing errors: one short paragraph saying what was wrong and what would be right.

The CLI prints a `UserError` as its message alone (no traceback) and exits with status 2;
the traceback still goes to the job's log file.
"""


class UserError(Exception):
    """An error the user can act on (bad config value, missing data, unreachable model)."""


class CapabilityError(UserError):
    """A task asked the method for a capability it does not have."""


def require(method, capability: str, task: str, family: str, examples: str = "") -> None:
    """Fail clearly when `method` lacks `capability` (a method attribute) that `task` needs."""
    if getattr(method, capability, None) is None:
        name = getattr(method, "name", type(method).__name__)
        hint = f" {family.capitalize()} methods: {examples}." if examples else ""
        raise CapabilityError(
            f"task {task} needs {_article(family)} {family} method (one with `{capability}`); "
            f"{name} is not one.{hint} Choose one with method=<name> (`llmlab ls method` lists them)."
        )


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
