"""Severity levels, ordered, and threshold parsing. One definition used everywhere."""

from __future__ import annotations

from enum import IntEnum

from bot.errors import ConfigError


class Severity(IntEnum):
    """Ordered so that ``Severity.CRITICAL > Severity.TRIVIAL``."""

    TRIVIAL = 0
    MINOR = 1
    MAJOR = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.label


#: The four labels in the order the task prompt lists them (most to least severe).
LABELS: tuple[str, ...] = ("critical", "major", "minor", "trivial")

MEANINGS: dict[str, str] = {
    "critical": "security vulnerabilities, bugs that will crash or abruptly exit the program",
    "major": "severe bugs that make the system produce incorrect results",
    "minor": "unexpected or undesired behaviour that does not disrupt the system's function",
    "trivial": "no noticeable breakdown: docstrings, comments, naming, style, formatting",
}


def parse_severity(value: str | Severity) -> Severity:
    """``"Major"`` → ``Severity.MAJOR``; a clear ConfigError for anything else."""
    if isinstance(value, Severity):
        return value
    key = str(value).strip().lower()
    for level in Severity:
        if level.label == key:
            return level
    raise ConfigError(f"unknown severity {value!r}", hint=f"use one of: {', '.join(LABELS)}")


def mass_at_least(probabilities: dict[str, float], threshold: Severity) -> float:
    """P(severity ≥ threshold) from a probability per label."""
    return sum(p for label, p in probabilities.items() if parse_severity(label) >= threshold)


def argmax_label(probabilities: dict[str, float]) -> Severity:
    """The most probable level; ties go to the more severe level (deterministic)."""
    best = max(LABELS, key=lambda label: (probabilities.get(label, 0.0), parse_severity(label)))
    return parse_severity(best)
