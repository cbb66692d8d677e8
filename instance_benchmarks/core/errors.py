"""One exception type for bad user input; the CLI turns it into a one-line error and exit code 2."""


class TrainfleetInputError(ValueError):
    """Raised for invalid user input (campaign files, instance types, URLs, paths, credentials)."""
