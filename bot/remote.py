"""Wiring for reviews on GitHub / GitLab and for feedback harvesting (hosts are built here from Config + env)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Mapping

from bot import app, plugins
from bot.config import Config
from bot.errors import ConfigError, DiffError, ThresholdFailure
from bot.hosts.base import HostEntry, MergeRequestRef
from bot.outcome import Outcome
from bot.terminal import one_line

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
    """An explicit --github/--gitlab (any host's --NAME), or the PR/MR of the CI job when no diff source was given."""
    entries = plugins.host_entries()
    for entry in entries:
        text = getattr(args, entry.dest, None)
        if text:
            return Target(entry.parse_ref(text), getattr(args, entry.url_dest, None) or "")
    if getattr(args, "diff", None) or getattr(args, "source", None):
        return None
    for entry in entries:
        job = entry.detect_ci(environ)
        if job is not None:
            return Target(*job)
    return None


def make_host(ref_host: str, config: Config, environ: Mapping[str, str], url: str = ""):
    entry = plugins.host_entry(ref_host)
    return app.make_host(ref_host, config, _token(environ, entry.token_vars), url, environ.get(MARKER_KEY_VAR, ""))


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
    identity = getattr(host, "identity", None)  # hosts whose login other workflows may share (GitHub Actions)
    if callable(identity) and identity(target.ref.repo).shared and not environ.get(MARKER_KEY_VAR):
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
    """The repository as the feedback store names it (a host entry may map a CI job's name for it, as GitLab's does
    for a numeric project id)."""
    entry = plugins.host_entry(ref.host)
    return entry.store_repo(ref, environ) if entry.store_repo is not None else ref.repo


def collect_source(args: argparse.Namespace) -> tuple[HostEntry, str]:
    """The one host (and its repository) ``feedback collect`` was pointed at with --NAME."""
    entries = plugins.host_entries()
    given = [(entry, getattr(args, entry.dest, None)) for entry in entries]
    given = [(entry, repo) for entry, repo in given if repo]
    if len(given) != 1:
        raise ConfigError("say where to collect from",
                          hint="pass " + " or ".join(f"--{e.name} {e.repo_metavar}" for e in entries))
    return given[0]


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
            entry, repo = collect_source(args)
            host = make_host(entry.name, config, environ, getattr(args, entry.url_dest, None) or "")
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
