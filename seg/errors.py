"""User-facing errors: raised for a mistake the user can fix, printed as one line by the entry points."""


class UserError(Exception):
    """A mistake in the user's config or data; the message names the file or key and the fix."""


class DataError(UserError):
    """A file or folder that does not satisfy the dataset contract."""
