"""PURE planning: (findings, ratings, config, existing comments) → ReviewPlan. No I/O.

Decisions made here and nowhere else:
- which findings are posted (threshold by probability mass P(≥ threshold) or by argmax; a cap on inline
  comments — the rest are listed in the summary, never silently dropped);
- which existing Sieve comments are kept (same fingerprint), updated (same fingerprint, changed severity,
  model or text), or resolved (their finding is gone: the code changed or was fixed);
- the text of every comment and of the summary, each carrying its hidden marker;
- which new comments are *held* in the summary instead of being posted: the host refused exactly this text on
  an earlier run (the summary remembers the fingerprint and the body's hash), so sending it again would only
  be refused again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from bot import markers, render
from bot.comments import Comment
from bot.findings import Finding, Rating, Skip
from bot.severity import LABELS, Severity, argmax_label, mass_at_least

ThresholdMode = Literal["mass", "argmax"]


@dataclass(frozen=True)
class PlanConfig:
    threshold: Severity = Severity.MINOR
    mode: ThresholdMode = "mass"  # "mass": post when P(severity ≥ threshold) ≥ mass_cutoff
    mass_cutoff: float = 0.5
    max_comments: int = 25  # inline comments in total (kept + new); the rest go to the summary
    commit: str = ""
    flavor: render.Flavor = "github"
    max_body: int | None = None  # the host's longest body in characters (its host entry's max_body); None: no limit


#: A comment already on the merge request (hosts build these with bot.comments.read). Only comments written by
#: Sieve's own identity carry a marker; every other comment is invisible to planning.
ExistingComment = Comment


@dataclass(frozen=True)
class PlannedComment:
    finding: Finding
    rating: Rating
    fingerprint: str
    body: str


@dataclass(frozen=True)
class Update:
    existing: ExistingComment
    comment: PlannedComment


@dataclass(frozen=True)
class Resolve:
    existing: ExistingComment
    reason: str


@dataclass(frozen=True)
class Decision:
    """What happened to one rated finding (the local report prints one row per decision)."""

    finding: Finding
    rating: Rating
    fingerprint: str
    posted: bool
    skip_reason: str | None = None


@dataclass(frozen=True)
class ReviewPlan:
    create: tuple[PlannedComment, ...]
    update: tuple[Update, ...]
    keep: tuple[ExistingComment, ...]
    resolve: tuple[Resolve, ...]
    decisions: tuple[Decision, ...]
    summary: str
    counts: dict[str, int] = field(default_factory=dict)
    held: tuple[PlannedComment, ...] = ()  # refused by the host before with this very text: listed in the summary

    @property
    def posted(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.posted)


def passes(rating: Rating, config: PlanConfig) -> tuple[bool, str | None]:
    """Does a rating clear the threshold? Returns (ok, reason-if-not)."""
    if config.mode == "argmax":
        level = argmax_label(rating.probabilities)
        if level >= config.threshold:
            return True, None
        return False, f"below threshold: argmax {level.label} < {config.threshold.label}"
    mass = mass_at_least(rating.probabilities, config.threshold)
    if mass >= config.mass_cutoff:
        return True, None
    return False, f"below threshold: P(≥{config.threshold.label}) = {mass:.2f} < {config.mass_cutoff:.2f}"


def _priority(rating: Rating) -> tuple[float, ...]:
    """Most severe first: compare P(critical), then P(≥major), then P(≥minor)."""
    p = rating.probabilities
    return (-p.get("critical", 0.0), -(p.get("critical", 0.0) + p.get("major", 0.0)),
            -(1.0 - p.get("trivial", 0.0)))


def select(findings: list[Finding], ratings: list[Rating], config: PlanConfig,
           existing: tuple[ExistingComment, ...] = ()) -> list[Decision]:
    """Decide posted / skipped for each finding (the app explains only the posted ones)."""
    if len(findings) != len(ratings):
        raise ValueError("one rating per finding is required")
    prints = markers.fingerprints(list(findings))
    on_host = {m.fingerprint for m in (c.marker for c in existing) if m}
    decisions: dict[int, Decision] = {}
    candidates = []
    for index, (finding, rating) in enumerate(zip(findings, ratings)):
        ok, reason = passes(rating, config)
        if ok:
            candidates.append(index)
        else:
            decisions[index] = Decision(finding, rating, prints[index], False, reason)
    candidates.sort(key=lambda i: (prints[i] not in on_host, _priority(ratings[i]), findings[i].anchor.path,
                                   findings[i].anchor.line))
    for rank, index in enumerate(candidates):
        if rank < config.max_comments:
            decisions[index] = Decision(findings[index], ratings[index], prints[index], True)
        else:
            decisions[index] = Decision(findings[index], ratings[index], prints[index], False,
                                        f"over the comment cap ({config.max_comments})")
    return [decisions[i] for i in range(len(findings))]


def _marker_for(d: Decision, config: PlanConfig) -> str:
    return markers.encode(markers.Marker(
        fingerprint=d.fingerprint, severity=d.rating.severity, probabilities=dict(d.rating.probabilities),
        model=d.rating.model_id, prompt_version=d.rating.prompt_version, commit=config.commit,
        path=d.finding.anchor.path, line=d.finding.anchor.line, review=d.finding.review, code=d.finding.code,
        source=d.finding.source, rule_id=d.finding.rule_id, level=d.finding.level))


def _changed(old: markers.Marker, new: Decision) -> bool:
    """An existing comment needs an edit when what it says changed (not merely the commit or line)."""
    same_review = (old.review_sha == markers.review_sha(new.finding.review) if old.review_sha
                   else old.review == new.finding.review)
    return old.severity != new.rating.severity or old.model != new.rating.model_id or not same_review


def plan(findings: list[Finding], ratings: list[Rating], config: PlanConfig,
         existing: tuple[ExistingComment, ...] = (), skips: tuple[Skip, ...] = (),
         refused: Mapping[str, str] | None = None) -> ReviewPlan:
    """The whole review plan. Deterministic for the same inputs. ``refused``: fingerprint → hash of the body the
    host refused on an earlier run (from the summary's seal)."""
    decisions = select(findings, ratings, config, existing)
    by_print: dict[str, ExistingComment] = {}
    for comment in existing:
        mark = comment.marker
        if mark and mark.fingerprint not in by_print:
            by_print[mark.fingerprint] = comment
    present = {d.fingerprint for d in decisions}
    create, update, keep, held = [], [], [], []
    dropped = 0  # suggestions too long for the host, counted in the summary
    for d in decisions:
        if not d.posted:
            continue
        body, cut = render.fit_comment(d.finding, d.rating, _marker_for(d, config), config.flavor,
                                         config.max_body)
        dropped += cut
        planned = PlannedComment(d.finding, d.rating, d.fingerprint, body)
        old = by_print.get(d.fingerprint)
        if old is None and (refused or {}).get(d.fingerprint) == markers.body_sha(body):
            held.append(planned)
        elif old is None:
            create.append(planned)
        elif _changed(old.marker, d) or old.resolved:
            update.append(Update(old, planned))
        else:
            keep.append(old)
    # findings that still exist but fell under the threshold keep their old comment untouched
    kept_prints = {c.marker.fingerprint for c in keep} | {u.existing.marker.fingerprint for u in update}
    for fp, comment in by_print.items():
        if fp in present and fp not in kept_prints:
            keep.append(comment)
    resolve = [Resolve(c, "the code this comment was about changed or the finding is gone")
               for fp, c in sorted(by_print.items()) if fp not in present and not c.resolved]
    counts = {label: 0 for label in LABELS}
    for d in decisions:
        counts[d.rating.severity] += 1
    summary = render.summary_body(
        counts=counts, posted=len(create), kept=len(keep) + len(update), resolved=len(resolve),
        below=[(d.finding, d.rating) for d in decisions if not d.posted and "threshold" in (d.skip_reason or "")],
        over_cap=[(d.finding, d.rating) for d in decisions if not d.posted and "cap" in (d.skip_reason or "")],
        skips=list(skips), model_id=ratings[0].model_id if ratings else "-", threshold=config.threshold.label,
        mode=config.mode, commit=config.commit, marker=markers.SUMMARY_MARKER, dropped_suggestions=dropped,
        limit=render.body_limit(config.max_body))
    return ReviewPlan(tuple(create), tuple(update), tuple(keep), tuple(resolve), tuple(decisions), summary, counts,
                      tuple(held))


def with_explanations(ratings: list[Rating], explanations: dict[int, str]) -> list[Rating]:
    """Attach generated explanations (index → text) to ratings."""
    return [replace(r, explanation=explanations[i]) if i in explanations else r for i, r in enumerate(ratings)]
