"""``sieve`` — the command line. Builds the one Config and hands it to bot.app; prints errors as one line.

Exit codes (bot/errors.py): 0 complete and clean, 1 ``fail_on`` met, 2 incomplete (a part failed), 64 usage or
configuration error; 3 is an unexpected bug and 130 an interrupt.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from datetime import datetime
from pathlib import Path

from bot import __version__, plugins
from bot.errors import EXIT_USAGE, ConfigError, SieveError, ThresholdFailure, redact
from bot.hosts.local import FORMATS, render_outcome
from bot.terminal import one_line


class _Parser(argparse.ArgumentParser):
    """argparse with Sieve's error shape: one line on stderr (usage only with --help) and the usage exit code,
    64, never argparse's 2, which Sieve keeps for an incomplete review."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _host_flags(p: argparse.ArgumentParser, *, review: bool) -> None:
    """``--NAME`` and ``--NAME-url`` for every registered host (review: a merge request; collect: a repository)."""
    entries = plugins.host_entries()
    for entry in entries:
        if review:
            p.add_argument(f"--{entry.name}", dest=entry.dest, metavar=entry.ref_metavar, help=entry.ref_help)
        else:
            p.add_argument(f"--{entry.name}", dest=entry.dest, metavar=entry.repo_metavar)
    for entry in entries:
        p.add_argument(f"--{entry.name}-url", dest=entry.url_dest, help=entry.url_help if review else None)


def _review_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="review a diff (file, stdin, GitHub PR or GitLab MR)")
    p.add_argument("source", nargs="?", help="'-' to read a diff from stdin, or a patch file")
    p.add_argument("--diff", help="patch file to review")
    _host_flags(p, review=True)
    p.add_argument("--repo", default=".", help="working tree holding the post-image files (local review)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")
    p.add_argument("--out", help="write the output to this file instead of stdout")
    p.add_argument("--threshold", help="lowest severity to post: critical|major|minor|trivial")
    p.add_argument("--threshold-mode", dest="threshold_mode", choices=("mass", "argmax"))
    p.add_argument("--fail-on", dest="fail_on", help="exit 1 when a finding is rated at least this severe")
    p.add_argument("--max-comments", dest="max_comments", help="cap on inline comments")
    p.add_argument("--reviewers", help="comma-separated: ruff,sarif,llm,local")
    p.add_argument("--sarif", action="append", help="SARIF file for the sarif reviewer (repeatable)")
    p.add_argument("--model", help="student model: a name (yours or a shipped one), a folder, 'base' (the default "
                                   "student's base without adapter), or smollm2 / gemma3-270m")
    p.add_argument("--models-dir", dest="models_dir", help="your models folder, searched before the shipped students")
    p.add_argument("--no-lexical", dest="lexical", action="store_const", const=False, default=None,
                   help="rate with the student alone, without its model's lexical prior")
    p.add_argument("--rater", choices=plugins.registry("rater").names())
    p.add_argument("--rater-base-url", dest="rater_base_url")
    p.add_argument("--rater-model", dest="rater_model")
    p.add_argument("--llm-base-url", dest="llm_base_url", help="OpenAI-compatible endpoint for the llm reviewer")
    p.add_argument("--llm-model", dest="llm_model")
    p.add_argument("--explain", dest="explain", action="store_const", const=True,
                   help="add the student's one-sentence reason under each comment (needs a student with an explainer: docs/explanations.md)")
    p.add_argument("--no-explain", dest="explain", action="store_const", const=False)
    p.add_argument("--allow-reviewer-failure", dest="allow_reviewer_failure", action="store_const", const=True,
                   help="exit 0 (and a passing status) although a reviewer or the rater failed")
    p.add_argument("--db", help="feedback store whose team memory adjusts the ratings (when the file exists)")
    p.add_argument("--no-memory", dest="memory", action="store_const", const=False, default=None,
                   help="rate without the team's memory of reactions")
    p.add_argument("--dry-run", action="store_true", help="with "
                   + "/".join(f"--{e.name}" for e in plugins.host_entries()) + ": plan and print, post nothing")
    p.add_argument("--config", help="path to .sieve.toml")


def _feedback_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feedback", help="harvest 👍/👎 and corrections; export them for training")
    fsub = p.add_subparsers(dest="action", required=True)
    c = fsub.add_parser("collect", help="read reactions and corrections on Sieve's comments")
    _host_flags(c, review=False)
    c.add_argument("--since", help="only comments updated since this ISO date")
    e = fsub.add_parser("export", help="write training examples (JSONL, the shape of the severity data)")
    e.add_argument("--out", required=True)
    e.add_argument("--include-untrusted", action="store_true")
    st = fsub.add_parser("stats", help="posted count and 👍-rate per severity level and model")
    i = fsub.add_parser("import", help="add reactions from a JSONL file (one object per reaction; docs/memory.md)")
    i.add_argument("file", help="JSONL file of reactions")
    mem = fsub.add_parser("memory", help="list what team memory learned; `memory revoke ID` revokes an entry")
    mem.add_argument("--repo", default=argparse.SUPPRESS, help="only this repository's entries (default: all)")
    msub = mem.add_subparsers(dest="memory_action")
    rv = msub.add_parser("revoke", help="never apply this entry again (it stays listed, marked revoked)")
    rv.add_argument("entry", help="the entry's id, as `sieve feedback memory` lists it")
    # accepted before and after the subcommand; SUPPRESS keeps a subcommand from resetting a value given before it
    for q in (c, e, st, i, mem, rv, p):
        default = None if q is p else argparse.SUPPRESS
        q.add_argument("--db", default=default, help="SQLite feedback store")
        q.add_argument("--config", default=default, help="path to .sieve.toml")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sieve", description="Merge-request review with a small, fine-tuned severity model")
    parser.add_argument("--version", action="version", version=f"sieve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _review_parser(sub)
    _feedback_parser(sub)
    m = sub.add_parser("models", help="list the student models")
    m.add_argument("action", choices=("list",))
    m.add_argument("--models-dir", dest="models_dir", help="your models folder (default: $SIEVE_MODELS_DIR)")
    m.add_argument("--format", choices=("text", "json"), default="text")
    m.add_argument("--config", help="path to .sieve.toml")
    sub.add_parser("train", help="teacher–student training (needs the 'train' extra)", add_help=False)
    return parser


_CONFIG_FLAGS = ("threshold", "threshold_mode", "fail_on", "max_comments", "reviewers", "model", "rater",
                 "rater_base_url", "rater_model", "llm_base_url", "llm_model", "explain", "db", "models_dir", "lexical",
                 "allow_reviewer_failure", "memory")


def _host_url_flags(args: argparse.Namespace) -> dict:
    """Each ``--NAME-url`` given, as the setting it stands for: the host's top-level URL setting (github_url) or,
    for a host without one, its ``[NAME] url``."""
    flags: dict = {}
    for entry in plugins.host_entries():
        url = getattr(args, entry.url_dest, None)
        if url is None:
            continue
        if entry.url_setting:
            flags[entry.url_setting] = url
        elif not url.strip():
            raise ConfigError(f"--{entry.name}-url was given an empty value",
                              hint=f"give it a value or leave --{entry.name}-url out for the default")
        else:
            flags[entry.name] = {"url": url}
    return flags


def make_config(args: argparse.Namespace):
    from bot import config as cfg

    flags = {k: getattr(args, k) for k in _CONFIG_FLAGS if getattr(args, k, None) is not None}
    flags.update(_host_url_flags(args))
    if getattr(args, "sarif", None):
        flags["sarif"] = tuple(args.sarif)
        if "reviewers" not in flags:
            flags["reviewers"] = ("sarif",)
    return cfg.build(flags, config_path=getattr(args, "config", None))


def check_since(text: str | None) -> str | None:
    """``--since`` as given when it is an ISO 8601 date or time; a ConfigError before any request otherwise."""
    if text is None:
        return None
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r} is not an ISO 8601 date or time",
                          hint="write it as 2026-01-31 or 2026-01-31T12:00:00Z") from None
    return text.strip()


def check_out(path: str | None, flag: str = "--out") -> None:
    """Refuse an output path that cannot be written as a file, before any work is done."""
    if path is None:
        return
    if not path.strip():
        raise ConfigError(f"{flag} was given an empty value", hint=f"pass {flag} with a file name")
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{flag} {path} is a folder, not a file", hint=f"pass {flag} with a file name, "
                          "e.g. out/feedback.jsonl")
    if not target.parent.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {target.parent} does not exist", hint="create it first")


def _emit(text: str, out: str | None) -> None:
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write --out {out}: {exc.strerror}", hint="pass a writable file") from None
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _read_local_diff(args: argparse.Namespace) -> tuple[bytes, str]:
    path = args.diff or args.source
    if path in (None, "-"):
        if path is None and sys.stdin.isatty():
            hosts = " or ".join(f"--{e.name}" for e in plugins.host_entries())
            raise ConfigError("nothing to review", hint=f"pass a patch file, '-' with a diff on stdin, {hosts}")
        return sys.stdin.buffer.read(), "stdin"
    try:
        return Path(path).read_bytes(), path
    except OSError as exc:
        raise ConfigError(f"cannot read diff file {path}: {exc.strerror}") from None


def cmd_review(args: argparse.Namespace) -> int:
    from bot import app, remote

    config = make_config(args)
    check_out(args.out)
    target = remote.detect_target(args, os.environ)
    if target is not None:
        outcome = remote.review_remote(target, config, dry_run=args.dry_run, environ=os.environ)
    else:
        data, name = _read_local_diff(args)
        root = Path(args.repo)
        source = app.Source(diff=data, name=name, read_file=app.worktree_reader(root), repo_root=root)
        outcome = app.review(source, config, flavor="local")
    _emit(render_outcome(outcome, args.format, color=args.out is None and sys.stdout.isatty()), args.out)
    if outcome.errors and config.allow_reviewer_failure:  # passing anyway: say what failed
        for error in outcome.errors:
            print(f"warning: {one_line(error)}", file=sys.stderr)
    app.check_complete(outcome, config)  # otherwise one error line says it (the rest are in the summary)
    if app.fail_on_hit(outcome, config):
        raise ThresholdFailure(f"findings rated {config.fail_on.label} or worse were found (--fail-on)")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from bot import remote

    config = make_config(args)
    if args.action == "collect":
        args.since = check_since(args.since)
    if args.action == "export":
        check_out(args.out)
    return remote.feedback_command(args, config, os.environ)


def cmd_models(args: argparse.Namespace) -> int:
    from bot import models

    models_dir = make_config(args).models_dir  # --models-dir, SIEVE_MODELS_DIR or .sieve.toml
    return models.models_list_main((["--models-dir", models_dir] if models_dir else []) + ["--format", args.format])


def dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "train":
        try:
            training_cli = importlib.import_module("training.cli")
        except ImportError as exc:
            raise ConfigError(f"training is not installed ({exc.name} missing)",
                              hint="install Sieve with its train extra: pip install -e '.[train]' in a Sieve checkout") from None
        try:
            return int(training_cli.main(argv[1:]) or 0)
        except SystemExit as exc:  # argparse's usage exit in `sieve train` is a usage error like any other
            raise SystemExit(EXIT_USAGE if exc.code == 2 else exc.code) from None
    args = build_parser().parse_args(argv)
    handler = {"review": cmd_review, "feedback": cmd_feedback, "models": cmd_models}[args.command]
    return handler(args)


def main(argv: list[str] | None = None) -> int:
    # llama.cpp's OpenMP workers spin while idle; on a shared CI runner sleeping is several times faster.
    # Must be set before llama_cpp is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else argv
    try:
        return dispatch(argv)
    except SieveError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected bug: one redacted line, the traceback only on request
        if os.environ.get("SIEVE_DEBUG"):
            raise
        print(f"error: internal error {type(exc).__name__}: {one_line(redact(str(exc)))} "
              "(set SIEVE_DEBUG=1 for a traceback and report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
