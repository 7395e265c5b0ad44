"""The one error hierarchy of Sieve.

Every error a user can see is a :class:`SieveError`; its message says what was wrong and what to do.
The CLI prints ``error: <message>`` and exits with :attr:`SieveError.exit_code`; it never prints a
traceback for these. Messages must never contain secrets: build them with :func:`redact`.

Exit codes (one meaning each, so a CI job can tell "fix your settings" from "a part failed"):
0 the review is complete and nothing reached ``fail_on``; 1 ``fail_on`` was met (:class:`ThresholdFailure`);
2 the review is incomplete or could not be done — a reviewer, the rater, the model, the host or the input
failed (every other :class:`SieveError`); 64 usage or configuration error — a bad flag, setting, file name or
model name (:class:`ConfigError`, and argparse's own errors), the ``EX_USAGE`` of BSD's sysexits.
"""

from __future__ import annotations

import os
import re

#: what ``sieve`` exits with (see the module docstring)
EXIT_OK, EXIT_FAIL_ON, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2, 64


class SieveError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with: a part of the run failed (2)."""

    exit_code = EXIT_INCOMPLETE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        text = redact(message)
        if hint:
            text = f"{text} — {redact(hint)}"
        super().__init__(text)


class ConfigError(SieveError):
    """Bad configuration or usage: unknown keys, wrong types, missing environment variables, bad file names.
    Nothing was reviewed; running again unchanged cannot help, hence its own exit code."""

    exit_code = EXIT_USAGE


class DiffError(SieveError):
    """The input is not a diff, or is empty."""


class ModelError(SieveError):
    """A model file is missing, corrupt or unusable."""


class ReviewerError(SieveError):
    """A reviewer failed as a whole (ruff missing, SARIF unreadable, endpoint down)."""


class EndpointError(SieveError):
    """An HTTP endpoint (OpenAI-compatible, GitHub, GitLab) failed after retries."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)


class RateLimitError(EndpointError):
    """Rate limited, and the retry budget is spent."""


class HostError(SieveError):
    """The hosting service refused or failed an operation."""


class StoreError(SieveError):
    """The feedback store could not be opened or migrated."""


class ImportRowsError(SieveError):
    """``sieve feedback import`` refused some rows (each reported with its line); the others were imported."""


class TrainingError(SieveError):
    """The training pipeline failed (bad data, teacher budget spent, export mismatch)."""


class UnknownModelError(ModelError, ConfigError):
    """A model name that resolves to nothing: a usage error (64), still a ModelError for callers that catch those."""


class ThresholdFailure(SieveError):
    """Not an error in Sieve: findings at or above ``--fail-on`` were found."""

    exit_code = EXIT_FAIL_ON


_SECRET_ENV = ("GITHUB_TOKEN", "GITLAB_TOKEN", "SIEVE_MARKER_KEY", "OPENAI_API_KEY", "SIEVE_LLM_API_KEY", "CI_JOB_TOKEN",
               "SIEVE_TEACHER_API_KEY", "GH_TOKEN", "SIEVE_GITHUB_TOKEN", "SIEVE_GITLAB_TOKEN")
_TOKEN_PATTERNS = [
    re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"github_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"glpat-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(authorization:\s*(?:bearer|token)\s+)\S+"),
    re.compile(r"(?i)((?:private-token|api[_-]?key|access_token|token)[=:]\s*)[^\s&'\"]+"),
]


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """Remove anything that looks like a credential, and the values of known secret variables."""
    out = str(text)
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            out = out.replace(value, "***")
    for value in extra:
        if value and len(value) >= 4:
            out = out.replace(value, "***")
    for pattern in _TOKEN_PATTERNS:
        if pattern.groups:
            out = pattern.sub(lambda m: m.group(1) + "***", out)
        else:
            out = pattern.sub("***", out)
    return out
