"""What one review run produced: the plan, what was skipped, and any partial failure (neutral data)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.findings import Skip
from bot.plan import ReviewPlan


@dataclass
class Outcome:
    plan: ReviewPlan
    skips: list[Skip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # partial failures: the run went on, these parts did not
    model_id: str = ""
    prompt_version: str = ""
    threshold: str = ""
    target: str = ""  # "change.patch", "owner/repo#12"
    seconds: float = 0.0
    applied: bool = False  # the plan was posted to a host (False: a local review or --dry-run posted nothing)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.plan.counts)

    @property
    def incomplete(self) -> bool:
        """A reviewer or the rater failed: what was posted is a partial review."""
        return bool(self.errors)
