"""One exception type for bad user input; the CLI turns it into a one-line error and exit code 2."""

import difflib


class TrainfleetInputError(ValueError):
    """Raised for invalid user input (campaign files, instance types, URLs, paths, credentials)."""


def known_names(known: list[str], limit: int = 20) -> str:
    """The names that do exist, for an error about one that does not: the first `limit`, then how many."""
    return ", ".join(known[:limit]) + (f", ... ({len(known)} in all)" if len(known) > limit else "") or "none"


def did_you_mean(name: str, known) -> str:
    """' (did you mean a, b?)' with the closest of `known` to a misspelt `name`, or ''."""
    close = difflib.get_close_matches(str(name), list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""
