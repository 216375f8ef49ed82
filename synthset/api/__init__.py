"""synthset's public Python API: one function per stage, each returning a result that prints itself.

    import synthset
    synthset.plan("recipes/demo.yaml")
    synthset.generate("runs/demo")          # under `accelerate launch` for many processes
    print(synthset.build("runs/demo"))

Every function accepts a local run directory or an `s3://` URL. See `synthset.api.stages` for each
function's arguments, results and errors.
"""

from synthset.api.demo import DemoResult, demo
from synthset.api.results import (
    BuildResult,
    CancelResult,
    CardWritten,
    CheckResult,
    CleanResult,
    Described,
    GenerateResult,
    NewRecipe,
    PlanResult,
    PushDone,
    ReviewResult,
    StatusResult,
    SubmitResult,
    TrainResult,
    ValidateResult,
    VerifyResult,
    VersionsResult,
)
from synthset.api.stages import (
    build,
    cancel_submitted,
    card,
    check,
    clean,
    generate,
    new,
    plan,
    push,
    review,
    status,
    submit,
    train,
    validate,
    verify,
    versions,
)

# The stages in pipeline order (and the names `synthset.<stage>` resolves to).
STAGES = (
    *("new", "check", "plan", "generate", "submit", "build", "card", "review", "push"),
    *("verify", "versions", "status", "validate", "clean", "train"),
)

__all__ = [
    "demo",
    "DemoResult",
    "build",
    "cancel_submitted",
    "card",
    "check",
    "clean",
    "generate",
    "new",
    "plan",
    "push",
    "review",
    "status",
    "submit",
    "train",
    "validate",
    "verify",
    "versions",
    "BuildResult",
    "CancelResult",
    "CardWritten",
    "CheckResult",
    "CleanResult",
    "Described",
    "GenerateResult",
    "NewRecipe",
    "PlanResult",
    "PushDone",
    "ReviewResult",
    "StatusResult",
    "SubmitResult",
    "TrainResult",
    "ValidateResult",
    "VerifyResult",
    "VersionsResult",
]
