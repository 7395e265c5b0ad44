"""The tool's own words for how bad a rule is — the ``level`` a finding carries into the student's prompt.

Reviewers that run an analyser know where each finding comes from: ruff states a *category* per rule
(correctness, security, suspicious, performance, complexity, style, pedantic, formatting, restriction), a
SARIF log states ``level`` (error / warning / note / none) and often ``properties.security-severity``. These
are passed to the student verbatim (``Finding.level``); the student learned from the vendors' own catalogues
what they tend to mean (``training.corpus``), so a level is evidence for the rating, never a rule table.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def ruff_catalogue(executable: str = "ruff") -> dict[str, dict[str, Any]]:
    """Every rule ruff knows (``ruff rule --all --output-format json``), by code; {} if ruff cannot say.

    Read once per process (≈0.1 s). A ruff too old to report categories just gives findings without a level.
    """
    try:
        done = subprocess.run([executable, "rule", "--all", "--output-format", "json"], capture_output=True,
                              timeout=60, check=False)
        rules = json.loads(done.stdout.decode("utf-8", "replace")) if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        log.info("ruff's rule catalogue is unavailable (%s); findings carry no level", exc)
        return {}
    return {str(rule["code"]): rule for rule in rules if isinstance(rule, dict) and rule.get("code")}


def ruff_level(code: str | None, executable: str = "ruff") -> str | None:
    """ruff's category for a rule code (``"security"`` for S608), None when unknown."""
    rule = ruff_catalogue(executable).get(str(code or ""))
    category = rule.get("category") if rule else None
    return str(category) if category else None


@lru_cache(maxsize=4096)
def ruff_rationale(code: str | None, executable: str = "ruff") -> str:
    """What the explainer reads of a ruff rule: "Why is this bad?" then "What it does" from ruff's own
    documentation (:func:`bot.explain.rule_text`); "" for a rule ruff does not document."""
    from bot.explain import markdown_section, rule_text

    rule = ruff_catalogue(executable).get(str(code or "")) or {}
    doc = str(rule.get("explanation") or "")
    return rule_text(markdown_section(doc, "Why is this bad?"), markdown_section(doc, "What it does"))


def sarif_rationale(rule: Mapping[str, Any] | None, message: str = "") -> str:
    """What the explainer reads of a SARIF rule: from its ``fullDescription`` or ``help`` (text or markdown), the
    "Why is this bad?" section where the tool writes one (ruff, clippy-style docs), else the longest of them that
    is prose of its own rather than the result's message; "" when the tool documents nothing more."""
    from bot.explain import markdown_section, rule_text

    rule = rule or {}
    texts = []
    for key in ("fullDescription", "help"):
        field = rule.get(key)
        if isinstance(field, Mapping):
            texts += [t for t in (field.get("text"), field.get("markdown")) if isinstance(t, str) and t.strip()]
    for text in texts:
        why = markdown_section(text, "Why is this bad?")
        if why:
            return rule_text(why, markdown_section(text, "What it does"))
    said = " ".join(message.split())
    prose = [" ".join(re.sub(r"^#+ [^\n]*$", " ", re.sub(r"```.*?```", " ", t, flags=re.DOTALL),
                             flags=re.MULTILINE).split()) for t in texts]
    prose = [p for p in prose if p and p != said and p != said.rstrip(".")]
    return rule_text(max(prose, key=len)) if prose else ""


def security_severity(properties: Mapping[str, Any] | None) -> float | None:
    """A SARIF rule's ``properties["security-severity"]`` as a number in [0, 10], None when absent or unusable."""
    raw = (properties or {}).get("security-severity")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and 0.0 <= value <= 10.0 else None


def sarif_level(result: Mapping[str, Any], rule: Mapping[str, Any]) -> str | None:
    """The tool's level for one SARIF result: ``security-severity 8.8`` when the rule states one, else the
    result's ``level`` or the rule's ``defaultConfiguration.level``."""
    score = security_severity(rule.get("properties") if isinstance(rule.get("properties"), Mapping) else None)
    if score is not None:
        return f"security-severity {score:g}"
    level = result.get("level") or (rule.get("defaultConfiguration") or {}).get("level")
    return str(level) if isinstance(level, str) and level else None
