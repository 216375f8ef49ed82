"""The error types a caller can catch; the CLI turns each into one line.

Bad input (a recipe key, a class name, a model path) must reach the user as a single line that names the
field, file or class at fault. Code that detects such a problem raises a `SynthsetError` (or one of the
subclasses below, so that a Python caller can tell a bad recipe from an unreachable store) with that line;
anything else is a bug and keeps its traceback.

    SynthsetError
    ├── RecipeError      the recipe, its class list or a training config is wrong
    ├── RunStateError    the run directory is not in the state a stage needs (not planned, unfinished, edited)
    ├── StoreError       an object store (s3://) cannot be reached or refuses
    ├── HubError         the Hugging Face Hub refused or a published version does not match
    ├── ModelError       a model cannot be resolved, loaded or is not the one the plan pinned
    └── SchedulerError   a cluster scheduler (SLURM) refused a submission or cannot be reached
"""


class SynthsetError(Exception):
    """A problem with the user's input or run directory, described in one line."""


class RecipeError(SynthsetError):
    """The recipe (or a class list or training config it names) is invalid; the line names the field."""


class RunStateError(SynthsetError):
    """The run directory is not in the state the stage needs: not planned, not finished, or edited since."""


class StoreError(SynthsetError):
    """The object store holding the run cannot be reached, lacks the bucket, or refused a request."""


class HubError(SynthsetError):
    """A Hub request failed for good, or a published version does not match its manifest."""


class ModelError(SynthsetError):
    """A model cannot be resolved or loaded, or is not the one the plan pinned."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type name), for a one-line report."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class SchedulerError(SynthsetError):
    """A cluster scheduler (SLURM's sbatch, squeue, scancel) refused a request or is not installed."""
