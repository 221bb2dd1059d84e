"""User-facing errors: raised for a mistake the user can fix, printed as one line by the entry points."""


class UserError(Exception):
    """A mistake in the user's config or data; the message names the file or key and the fix."""


class DataError(UserError):
    """A file or folder that does not satisfy the dataset contract."""


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite; the message names the step and the checkpoint kept."""


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint to resume from; not a mistake."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
