"""The only wiring: source → diff → reviewers → rater → plan → output or host. No decisions of its own."""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from bot import memory_app, plugins, render
from bot import plan as planning
from bot.config import Config
from bot.errors import ConfigError, DiffError, ReviewerError, SieveError
from bot.findings import Finding, ParsedDiff, Rating, ReviewerResult, Skip
from bot.outcome import Outcome
from bot.prompt import PROMPT_VERSION


@dataclass(frozen=True)
class Source:
    """What to review: raw diff bytes (local) plus a way to read post-image files."""

    diff: bytes
    name: str
    read_file: Callable[[str], bytes | None]
    repo_root: Path | None = None
    head_sha: str | None = None
    repo: str | None = None  # "owner/name" on a host: the team memory it gets; None (a local diff): every repo's


def worktree_reader(root: Path) -> Callable[[str], bytes | None]:
    def read(path: str) -> bytes | None:
        try:  # a name no file system can hold (NUL, too long) is simply not there
            target = (root / path).resolve()
            if root.resolve() not in target.parents or not target.is_file():
                return None
            return target.read_bytes()
        except (OSError, ValueError):
            return None

    return read


def parse_diff(data: bytes, config: Config) -> tuple[ParsedDiff, list[Skip]]:
    from bot import diff as diffmod

    if len(data) > config.max_diff_bytes:
        raise DiffError(f"the diff is {len(data):,} bytes, over max_diff_bytes ({config.max_diff_bytes:,} bytes)",
                        hint="raise max_diff_bytes in .sieve.toml or review fewer commits at once")
    parsed = diffmod.parse(data)
    skips = [Skip(s.path, s.reason) for s in parsed.skipped]
    if config.ignore:
        kept = []
        for f in parsed.files:
            if any(fnmatch.fnmatch(f.path, pattern) for pattern in config.ignore):
                skips.append(Skip(f.path, "ignored by configuration"))
            else:
                kept.append(f)
        parsed = replace(parsed, files=tuple(kept))
    return parsed, skips


def reviewer_config(name: str, config: Config):
    """The named reviewer's options object, from its ``[reviewers.NAME]`` table (None: it takes none)."""
    if plugins.registry("reviewers").options_class(name) is None:
        return None
    return config.options(f"reviewers.{name}", ready=True)


def make_reviewer(name: str, config: Config):
    """Build a registered reviewer (bot.plugins registers the built-in ones)."""
    return plugins.registry("reviewers").create(name, reviewer_config(name, config))


def run_reviewers(parsed: ParsedDiff, source: Source, config: Config) -> tuple[list[Finding], list[Skip], list[str]]:
    """Run every configured reviewer; one failing reviewer is reported, the others still count."""
    from bot.reviewers.base import ReviewContext

    ctx = ReviewContext(read_file=source.read_file, repo_root=source.repo_root, head_sha=source.head_sha)
    findings: list[Finding] = []
    skips: list[Skip] = []
    errors: list[str] = []
    reviewers = [(name, make_reviewer(name, config)) for name in config.reviewers]  # config errors are fatal
    for name, reviewer in reviewers:
        try:
            result: ReviewerResult = reviewer.review(parsed, ctx)
        except SieveError as exc:
            errors.append(f"reviewer {name}: {exc}")
            continue
        findings.extend(result.findings)
        skips.extend(result.skipped)
    return findings, skips, errors


def rater_model(config: Config):
    """The student the configured rater loads (resolved and verified: manifest, hashes, prompt version), or None
    when that rater loads no local model. Cheap, so a review checks it before any reviewer runs."""
    from bot.models import resolve_model

    if not getattr(plugins.registry("rater").options_class(config.rater), "loads_model", False):
        return None
    return resolve_model(config.model, Path(config.models_dir) if config.models_dir else None)


def make_rater(config: Config, model=None):
    """The student rater named by the config; a rater that loads a model gets it through the model registry."""
    raters = plugins.registry("rater")
    options = config.options(f"rater.{config.rater}", ready=True) if raters.options_class(config.rater) else None
    kwargs = options.rater_kwargs() if options is not None else {}
    if getattr(options, "loads_model", False):
        kwargs.update((model or rater_model(config)).rater_options(lexical=config.lexical))
    return raters.create(config.rater, **kwargs)


def make_host(name: str, config: Config, token: str, url: str = "", marker_key: str = ""):
    """The registered host ``name`` (github, gitlab …) with its ``[NAME]`` settings; ``url`` (from the CI job) wins.
    ``marker_key`` seals Sieve's comments (bot.markers.Seal)."""
    options = config.options(name, {"url": url} if url else None)
    return plugins.registry("hosts").create(name, token, **options.host_kwargs(), marker_key=marker_key)


def rate_all(rater, findings: list[Finding], chunk: int = 16) -> tuple[list[Rating], str | None]:
    """Rate in chunks so that an error mid-way keeps every rating made before it."""
    ratings: list[Rating] = []
    for start in range(0, len(findings), chunk):
        try:
            ratings.extend(rater.rate(findings[start:start + chunk]))
        except SieveError as exc:
            return ratings, f"rating stopped after {len(ratings)} of {len(findings)} findings: {exc}"
    return ratings, None


def explain_posted(rater, findings: list[Finding], ratings: list[Rating]) -> list[str]:
    """One sentence (or "") per posted finding: all at once where the rater can batch them, else one by one."""
    many = getattr(rater, "explain_many", None)
    if callable(many):
        return list(many(findings, ratings))
    return [rater.explain(f, r) for f, r in zip(findings, ratings)]


def max_body(flavor: str) -> int | None:
    """The longest body the host ``flavor`` accepts (its host entry's max_body); None for a local report."""
    return None if flavor == "local" else plugins.host_entry(flavor).max_body


def plan_config(config: Config, commit: str, flavor: str) -> planning.PlanConfig:
    return planning.PlanConfig(threshold=config.threshold, mode=config.threshold_mode,
                               mass_cutoff=config.mass_cutoff, max_comments=config.max_comments,
                               commit=commit, flavor=flavor, max_body=max_body(flavor))


def review(source: Source, config: Config, *, flavor: str = "local", existing=(), rater=None,
           refused=None) -> Outcome:
    """The whole offline review path. Hosts call this with their fetched diff, existing comments and the
    comments they refused before (``refused``: fingerprint → body hash, from the summary's seal)."""
    started = time.perf_counter()
    model = rater_model(config) if rater is None else None  # a broken model fails before any reviewer runs
    parsed, skips = parse_diff(source.diff, config)
    findings, reviewer_skips, errors = run_reviewers(parsed, source, config)
    skips += reviewer_skips
    if len(findings) > config.max_findings:
        for f in findings[config.max_findings:]:
            skips.append(Skip(f"{f.anchor.path}:{f.anchor.line}", f"over max_findings ({config.max_findings})"))
        findings = findings[: config.max_findings]
    model_id = "-"
    ratings: list[Rating] = []
    if findings:
        rater = rater or make_rater(config, model)
        model_id = rater.model_id
        ratings, error = rate_all(rater, findings)
        if error:
            errors.append(error)
            for f in findings[len(ratings):]:
                skips.append(Skip(f"{f.anchor.path}:{f.anchor.line}", "not rated (rater failed)"))
            findings = findings[: len(ratings)]
        ratings = memory_app.adjust(findings, ratings, config, source.repo)  # before planning: the threshold sees it
    pconf = plan_config(config, source.head_sha or "", flavor)
    warnings = list(parsed.warnings)
    if config.explain and ratings:
        posted = [i for i, d in enumerate(planning.select(findings, ratings, pconf, tuple(existing))) if d.posted]
        texts = explain_posted(rater, [findings[i] for i in posted], [ratings[i] for i in posted])
        explanations = {i: text for i, text in zip(posted, texts)
                        if text and _normal(text) != _normal(findings[i].review)}  # an echo says nothing
        ratings = planning.with_explanations(ratings, explanations)
        if getattr(rater, "explain_problem", ""):
            warnings.append(f"explanations left out: {rater.explain_problem}")
    result = planning.plan(findings, ratings, pconf, tuple(existing), tuple(skips), refused)
    errors = [" ".join(e.split()) for e in errors]  # one line each
    if errors:
        result = replace(result, summary=render.with_failures(result.summary, errors, config.allow_reviewer_failure,
                                                              render.body_limit(pconf.max_body)))
    return Outcome(plan=result, skips=skips, warnings=warnings, errors=errors, model_id=model_id,
                   prompt_version=PROMPT_VERSION, threshold=config.threshold.label, target=source.name,
                   seconds=time.perf_counter() - started)


def refusal(source: Source, error: SieveError, config: Config, *, flavor: str, existing=()) -> Outcome:
    """The outcome of a merge request Sieve would not review as a whole (its diff is over ``max_diff_bytes``):
    nothing is rated, existing comments are kept as they are, and the summary and status say why."""
    pconf = plan_config(config, source.head_sha or "", flavor)
    empty = planning.plan([], [], pconf, tuple(existing))
    kept = replace(empty, keep=tuple(existing), resolve=())
    reason = " ".join(str(error).split())
    summary = render.with_failures(kept.summary, [f"not reviewed: {reason}"], config.allow_reviewer_failure,
                                   render.body_limit(pconf.max_body))
    return Outcome(plan=replace(kept, summary=summary), errors=[f"not reviewed: {reason}"], model_id="-",
                   prompt_version=PROMPT_VERSION, threshold=config.threshold.label, target=source.name)


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def fail_on_hit(outcome: Outcome, config: Config) -> bool:
    """True when any rated finding (posted or not) is rated at least ``fail_on``."""
    if config.fail_on is None:
        return False
    from bot.severity import parse_severity

    return any(parse_severity(d.rating.severity) >= config.fail_on for d in outcome.plan.decisions)


def check_complete(outcome: Outcome, config: Config) -> None:
    """A failed reviewer or rater fails the run (after its partial results were shown or posted), unless the
    configuration allows it (``--allow-reviewer-failure``)."""
    if outcome.incomplete and not config.allow_reviewer_failure:
        more = f" (and {len(outcome.errors) - 1} more)" if len(outcome.errors) > 1 else ""
        raise ReviewerError(f"the review is incomplete: {outcome.errors[0]}{more}",
                            hint="fix it and run again, or pass --allow-reviewer-failure to let such runs pass")


def status_for(outcome: Outcome, config: Config):
    """The commit status to set: failing when the review is incomplete or ``fail_on`` is hit; otherwise a
    passing one — which, when no ``fail_on`` is configured, only replaces a Sieve status already on the head
    (an earlier failed run's), so a re-run that passes never leaves a red status behind."""
    from bot.hosts.base import StatusSpec

    found = sum(outcome.counts.values())
    if outcome.incomplete and not config.allow_reviewer_failure:
        return StatusSpec("failure", f"review incomplete ({outcome.errors[0].split(':')[0]} failed); "
                                     f"{found} finding(s)")
    if config.fail_on is None:
        return StatusSpec("success", f"{found} finding(s)", only_to_replace=True)
    failed = fail_on_hit(outcome, config)
    return StatusSpec("failure" if failed else "success", f"{found} finding(s); fail-on {config.fail_on.label}")
