"""The only wiring: source → diff → reviewers → rater → plan → output or host. No decisions of its own."""

from __future__ import annotations

import fnmatch
import importlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from bot import plan as planning
from bot import render
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


def worktree_reader(root: Path) -> Callable[[str], bytes | None]:
    def read(path: str) -> bytes | None:
        target = (root / path).resolve()
        if root.resolve() not in target.parents or not target.is_file():
            return None
        return target.read_bytes()

    return read


def parse_diff(data: bytes, config: Config) -> tuple[ParsedDiff, list[Skip]]:
    from bot import diff as diffmod

    if len(data) > config.max_diff_bytes:
        raise DiffError(f"the diff is {len(data) / 1e6:.1f} MB, over max_diff_bytes ({config.max_diff_bytes / 1e6:.0f} MB)",
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
    """Translate the one Config into the named reviewer's own config dataclass."""
    if name == "sarif":
        from bot.reviewers.sarif import SarifConfig

        if not config.sarif:
            raise ConfigError("the sarif reviewer needs SARIF files", hint="pass --sarif FILE or set sarif = [...]")
        return SarifConfig(paths=tuple(config.sarif))
    if name == "llm":
        from bot.reviewers.llm import LLMConfig

        if not (config.llm_base_url and config.llm_model):
            raise ConfigError("the llm reviewer needs an endpoint and a model",
                              hint="pass --llm-base-url URL --llm-model NAME (or set them in .sieve.toml)")
        return LLMConfig(base_url=config.llm_base_url, model=config.llm_model, api_key_env=config.llm_api_key_env,
                         timeout_s=max(config.timeout, 1.0))
    return None  # ruff and local use their defaults


def make_reviewer(name: str, config: Config):
    """Build a registered reviewer (importing bot.reviewers registers the built-in ones)."""
    importlib.import_module("bot.reviewers")
    from bot.reviewers.base import REVIEWERS

    return REVIEWERS.create(name, reviewer_config(name, config))


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


def make_rater(config: Config):
    """The student rater named by the config (model resolved through the model registry)."""
    from bot.models import resolve_model
    from bot.rater.base import RATERS

    if config.rater == "openai":
        importlib.import_module("bot.rater.openai")
        return RATERS.create("openai", base_url=config.rater_base_url, model=config.rater_model)
    importlib.import_module("bot.rater.llamacpp")
    info = resolve_model(config.model, Path(config.models_dir) if config.models_dir else None)
    options = info.rater_options()
    if not config.lexical:
        options.update(lexical_path=None, lexical_weight=0.0)
    return RATERS.create("llamacpp", weight_format=config.weight_format, **options)


def rate_all(rater, findings: list[Finding], chunk: int = 16) -> tuple[list[Rating], str | None]:
    """Rate in chunks so that an error mid-way keeps every rating made before it."""
    ratings: list[Rating] = []
    for start in range(0, len(findings), chunk):
        try:
            ratings.extend(rater.rate(findings[start:start + chunk]))
        except SieveError as exc:
            return ratings, f"rating stopped after {len(ratings)} of {len(findings)} findings: {exc}"
    return ratings, None


def plan_config(config: Config, commit: str, flavor: str) -> planning.PlanConfig:
    return planning.PlanConfig(threshold=config.threshold, mode=config.threshold_mode,
                               mass_cutoff=config.mass_cutoff, max_comments=config.max_comments,
                               commit=commit, flavor=flavor)


def review(source: Source, config: Config, *, flavor: str = "local", existing=(), rater=None) -> Outcome:
    """The whole offline review path. Hosts call this with their fetched diff and existing comments."""
    started = time.perf_counter()
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
        rater = rater or make_rater(config)
        model_id = rater.model_id
        ratings, error = rate_all(rater, findings)
        if error:
            errors.append(error)
            for f in findings[len(ratings):]:
                skips.append(Skip(f"{f.anchor.path}:{f.anchor.line}", "not rated (rater failed)"))
            findings = findings[: len(ratings)]
    pconf = plan_config(config, source.head_sha or "", flavor)
    if config.explain and ratings:
        explanations = {}
        for i, d in enumerate(planning.select(findings, ratings, pconf, tuple(existing))):
            if d.posted:
                text = rater.explain(findings[i], ratings[i])
                if text and _normal(text) != _normal(findings[i].review):  # an echo of the review says nothing
                    explanations[i] = text
        ratings = planning.with_explanations(ratings, explanations)
    result = planning.plan(findings, ratings, pconf, tuple(existing), tuple(skips))
    errors = [" ".join(e.split()) for e in errors]  # one line each
    if errors:
        result = replace(result, summary=render.with_failures(result.summary, errors, config.allow_reviewer_failure,
                                                              render.body_limit(flavor)))
    return Outcome(plan=result, skips=skips, warnings=list(parsed.warnings), errors=errors, model_id=model_id,
                   prompt_version=PROMPT_VERSION, threshold=config.threshold.label, target=source.name,
                   seconds=time.perf_counter() - started)


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
    """The commit status to set: failing when the review is incomplete or ``fail_on`` is hit; None when
    neither applies and no ``fail_on`` is configured."""
    from bot.hosts.base import StatusSpec

    found = sum(outcome.counts.values())
    if outcome.incomplete and not config.allow_reviewer_failure:
        return StatusSpec("failure", f"review incomplete ({outcome.errors[0].split(':')[0]} failed); "
                                     f"{found} finding(s)")
    if config.fail_on is None:
        return None
    failed = fail_on_hit(outcome, config)
    return StatusSpec("failure" if failed else "success", f"{found} finding(s); fail-on {config.fail_on.label}")
