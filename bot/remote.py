"""Wiring for reviews on GitHub / GitLab and for feedback harvesting (hosts are built here from Config + env)."""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Mapping

from bot import app
from bot.config import Config
from bot.errors import ConfigError, DiffError, ThresholdFailure
from bot.hosts.base import MergeRequestRef
from bot.outcome import Outcome
from bot.terminal import one_line

GITHUB_TOKEN_VARS = ("SIEVE_GITHUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN")
GITLAB_TOKEN_VARS = ("SIEVE_GITLAB_TOKEN", "GITLAB_TOKEN")
#: The per-repository secret that seals Sieve's comments (bot.markers.Seal); a repository secret in CI.
MARKER_KEY_VAR = "SIEVE_MARKER_KEY"


@dataclass(frozen=True)
class Target:
    ref: MergeRequestRef
    url: str  # API base URL for the host


def _token(environ: Mapping[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        if environ.get(name):
            return environ[name]
    raise ConfigError(f"no token found in {' / '.join(names)}",
                      hint="export a token with permission to read the repository and write comments")


def detect_target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target | None:
    """An explicit --github/--gitlab, or the PR/MR of the CI job when no diff source was given."""
    local_given = getattr(args, "diff", None) or getattr(args, "source", None)
    if getattr(args, "github", None):
        gh = importlib.import_module("bot.hosts.github")
        return Target(gh.parse_github_ref(args.github), args.github_url or "")
    if getattr(args, "gitlab", None):
        gl = importlib.import_module("bot.hosts.gitlab")
        return Target(gl.parse_gitlab_ref(args.gitlab), args.gitlab_url or "")
    if local_given:
        return None
    if environ.get("GITHUB_EVENT_PATH") and environ.get("GITHUB_ACTIONS"):
        gh = importlib.import_module("bot.hosts.github")
        return Target(gh.ref_from_actions_env(environ), environ.get("GITHUB_API_URL", ""))
    if environ.get("CI_MERGE_REQUEST_IID"):
        gl = importlib.import_module("bot.hosts.gitlab")
        return Target(gl.ref_from_ci_env(environ), gl.url_from_ci_env(environ))
    return None


def make_host(ref_host: str, config: Config, environ: Mapping[str, str], url: str = ""):
    names = GITHUB_TOKEN_VARS if ref_host == "github" else GITLAB_TOKEN_VARS
    return app.make_host(ref_host, config, _token(environ, names), url, environ.get(MARKER_KEY_VAR, ""))


def review_remote(target: Target, config: Config, *, dry_run: bool, environ: Mapping[str, str]) -> Outcome:
    host = make_host(target.ref.host, config, environ, target.url)
    mr = host.fetch(target.ref)
    source = app.Source(diff=mr.diff, name=str(target.ref), read_file=lambda path: host.read_file(mr, path),
                        head_sha=mr.head_sha, repo=repo_name(target.ref, environ))
    try:
        outcome = app.review(source, config, flavor=target.ref.host, existing=mr.existing,
                             refused=mr.summary_state.refused)
    except DiffError as exc:  # the diff as a whole is refused: the merge request still learns why
        if dry_run:
            raise
        outcome = app.refusal(source, exc, config, flavor=target.ref.host, existing=mr.existing)
    if dry_run:
        return outcome
    if host.name == "github" and host.identity(target.ref.repo).shared and not environ.get(MARKER_KEY_VAR):
        outcome.warnings.append(f"Sieve writes as {host.bot_login()}, which other workflows share; set the "
                                f"repository secret {MARKER_KEY_VAR} so that no other workflow's comment can pass "
                                "for Sieve's (see docs/identity.md)")
    result = host.apply(mr, outcome.plan, app.status_for(outcome, config))
    outcome.applied = True
    outcome.warnings.append(f"{target.ref}: created {result.created}, updated {result.updated}, "
                            f"resolved {result.resolved}, file-level {result.file_level}, "
                            f"to summary {result.to_summary}; {result.api_calls} API calls, {result.writes} writes")
    outcome.warnings.extend(result.notes)
    return outcome


def repo_name(ref: MergeRequestRef, environ: Mapping[str, str]) -> str:
    """The repository as the feedback store names it: a GitLab job's numeric project id is its path
    (``CI_PROJECT_PATH``, the name ``sieve feedback collect --gitlab`` is given)."""
    if ref.host == "gitlab" and ref.repo == environ.get("CI_PROJECT_ID") and environ.get("CI_PROJECT_PATH"):
        return environ["CI_PROJECT_PATH"]
    return ref.repo


def feedback_command(args: argparse.Namespace, config: Config, environ: Mapping[str, str]) -> int:
    """``sieve feedback collect | export | stats``. Only collect writes to the store; export and stats open it
    read-only, so they work on a store they may not write (a read-only file, folder or mount)."""
    from bot import feedback_app, store

    if args.action in ("import", "memory"):
        from bot import memory_app

        return memory_app.feedback_command(args, config)
    db = store.open_store(getattr(args, "db", None) or config.db, read_only=args.action != "collect")
    try:
        if args.action == "collect":
            if bool(args.github) == bool(args.gitlab):
                raise ConfigError("say where to collect from", hint="pass --github OWNER/REPO or --gitlab GROUP/PROJECT")
            kind, repo = ("github", args.github) if args.github else ("gitlab", args.gitlab)
            host = make_host(kind, config, environ, args.github_url if kind == "github" else args.gitlab_url or "")
            stats = feedback_app.collect(host, repo, args.since, db)
            print(stats)
            for note in stats.notes:
                print(f"note: {one_line(note)}", file=sys.stderr)
        elif args.action == "export":
            count = feedback_app.export(db, args.out, trusted_only=not args.include_untrusted)
            print(one_line(f"wrote {count} example(s) to {args.out}"))
            missing = feedback_app.left_out(db, unlabelled_only=True) if not args.include_untrusted else None
            if missing:
                print(f"note: {one_line(missing)}", file=sys.stderr)
        else:
            for row in feedback_app.stats(db):
                print(one_line("  ".join(f"{k}={v}" for k, v in row.items())))
            missing = feedback_app.left_out(db)
            if missing:
                print(f"note: {one_line(missing)}", file=sys.stderr)
    finally:
        db.close()
    return 0


__all__ = ["Target", "detect_target", "review_remote", "feedback_command", "ThresholdFailure"]
