"""The vendor-rule teacher: analysers' own rule metadata turned into labelled severity examples.

A team that runs ruff, CodeQL or any SARIF-emitting analyser already owns thousands of severity judgements
written by the tools' authors: ruff's category per rule, SARIF's ``level`` and ``security-severity``, the
vendor levels collected in ``../shared/data/analysers``. This module turns them into items of the training
data's shape (``review`` = what a developer would see, ``label`` = the vendor's level mapped to ours, a lenient
band, ``tool`` / ``rule`` / ``level`` / ``group``), so an air-gapped team can teach its student the rules it
actually runs: ``sieve train corpus --ruff --sarif codeql.sarif --out corpus.jsonl``.

The mapping from each vendor's words to the four levels lives here and nowhere else (:data:`RUFF_CATEGORIES`,
:func:`sarif_label`); ``../shared/data/analysers/README.md`` documents the one used for its rows, which
:func:`sarif_label` follows for security-severity and SARIF levels.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bot.errors import TrainingError
from bot.prompt import origin_text
from bot.reviewers.origin import ruff_catalogue, security_severity
from training.examples import Example, from_record, read_records

#: ruff's rule categories → (label, lenient band). Security rules are vulnerabilities (critical); correctness
#: rules are bugs that give wrong results or crash (major, band up to critical); suspicious constructs are
#: often but not always bugs (minor, band up to major); performance is minor; the rest is style.
RUFF_CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "security": ("critical", ("critical", "major")),
    "correctness": ("major", ("critical", "major")),
    "suspicious": ("minor", ("major", "minor")),
    "performance": ("minor", ("minor", "trivial")),
    "complexity": ("trivial", ("minor", "trivial")),
    "style": ("trivial", ("minor", "trivial")),
    "pedantic": ("trivial", ("minor", "trivial")),
    "formatting": ("trivial", ("trivial",)),
    "restriction": ("trivial", ("minor", "trivial")),
}

#: SARIF ``level`` → (label, band) for rules without a security-severity.
SARIF_LEVELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "error": ("major", ("critical", "major")),
    "warning": ("minor", ("major", "minor")),
    "note": ("trivial", ("minor", "trivial")),
    "none": ("trivial", ("trivial",)),
}


def sarif_label(level: str | None, severity: float | None) -> tuple[str, tuple[str, ...]] | None:
    """(label, band) for a SARIF rule: security-severity first (≥ 9 critical; ≥ 7 critical, band major;
    ≥ 4 major; > 0 minor), else its level; None when the rule states neither."""
    if severity is not None and severity > 0:
        if severity >= 9.0:
            return "critical", ("critical",)
        if severity >= 7.0:
            return "critical", ("critical", "major")
        if severity >= 4.0:
            return "major", ("critical", "major")
        return "minor", ("major", "minor")
    return SARIF_LEVELS.get(str(level or "").lower())


_PLACEHOLDER = re.compile(r"\{(\w*)\}")


def _squash(text: str, limit: int = 400) -> str:
    text = re.sub(r"```.*?```", " ", text or "", flags=re.DOTALL)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _first_sentence(text: str) -> str:
    match = re.search(r"(?<=[.!?])\s", text)
    return text[: match.start()] if match else text


def _section(markdown: str, heading: str) -> str:
    """The text under ``## heading`` of a ruff explanation."""
    match = re.search(rf"^##\s*{re.escape(heading)}\s*$(.*?)(?=^##\s|\Z)", markdown or "", flags=re.MULTILINE | re.DOTALL)
    return _squash(match.group(1)) if match else ""


def _record(tool: str, rule: str, level: str, review: str, label: str, band: Iterable[str], row: int,
            source: str, lang: str) -> dict[str, Any]:
    return {"id": f"{tool}:{rule}:{row}", "code": "", "code_kind": "none", "review": review, "label": label,
            "acceptable_labels": list(band), "label_quality": "vendor", "lang": lang, "source": source,
            "orig_label": level, "tool": tool, "rule": rule, "level": level, "group": f"{tool}:{rule}"}


def ruff_records(rules: Iterable[Mapping[str, Any]], version: str = "") -> list[dict[str, Any]]:
    """Two rows per ruff rule with a known category: (a) its message as ruff prints it (``S608 Possible SQL
    injection …``, placeholders left as their names), (b) its summary and why it is bad."""
    out = []
    for rule in rules:
        code, category = str(rule.get("code") or ""), str(rule.get("category") or "")
        if not code or category not in RUFF_CATEGORIES:
            continue
        label, band = RUFF_CATEGORIES[category]
        formats = [f for f in rule.get("message_formats") or [] if isinstance(f, str)] or [rule.get("summary") or ""]
        message = _PLACEHOLDER.sub(lambda m: m.group(1) or "value", formats[-1]).strip()
        why = _first_sentence(_section(str(rule.get("explanation") or ""), "Why is this bad?"))
        summary = _PLACEHOLDER.sub(lambda m: m.group(1) or "value", str(rule.get("summary") or "")).strip()
        source = f"ruff@{version}" if version else "ruff"
        if message:
            out.append(_record("ruff", code, category, _squash(f"{code} {message}"), label, band, 1, source, "python"))
        if summary and why:
            out.append(_record("ruff", code, category, _squash(f"{summary}: {why}"), label, band, 2, source, "python"))
    return out


def sarif_records(log: Mapping[str, Any], where: str = "SARIF log") -> list[dict[str, Any]]:
    """Rows from every rule a SARIF log describes (``tool.driver.rules`` and extensions): (a) the short
    description, (b) the full description; labelled by security-severity, else default level."""
    runs = log.get("runs") if isinstance(log, Mapping) else None
    if not isinstance(runs, list):
        raise TrainingError(f"{where} has no 'runs' list", hint="pass a SARIF 2.1.0 log")
    out = []
    for run in runs:
        tool = (run.get("tool") or {}) if isinstance(run, Mapping) else {}
        components = [tool.get("driver") or {}] + list(tool.get("extensions") or [])
        for component in components:
            name = str(component.get("name") or "sarif").strip().lower()
            for rule in component.get("rules") or []:
                out.extend(_sarif_rule_records(name, rule))
    return out


def _sarif_rule_records(tool: str, rule: Mapping[str, Any]) -> list[dict[str, Any]]:
    properties = rule.get("properties") if isinstance(rule.get("properties"), Mapping) else {}
    severity = security_severity(properties)
    level = (rule.get("defaultConfiguration") or {}).get("level")
    mapped = sarif_label(level, severity)
    rule_id = str(rule.get("id") or "")
    if not mapped or not rule_id:
        return []
    label, band = mapped
    stated = f"security-severity {severity:g}" if severity is not None else str(level)
    texts = [(rule.get(key) or {}).get("text", "") for key in ("shortDescription", "fullDescription")]
    out, seen = [], set()
    for row, text in enumerate(texts, 1):
        text = _squash(text)
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out.append(_record(tool, rule_id, stated, text, label, band, row, f"sarif:{tool}", ""))
    return out


def analyser_records(path: str | Path) -> list[dict[str, Any]]:
    """The shared vendor-labelled rows (``../shared/data/analysers/analysers.jsonl``), with ``level`` = the
    vendor's own level string."""
    records = [record for _, record in read_records(path, "point --analysers at analysers.jsonl")]
    for record in records:
        record.setdefault("level", record.get("orig_label", ""))
    return records


def with_origin(example: Example, mode: str) -> Example:
    """A copy whose ``meta["origin"]`` shows the tool, rule and level (``full``), tool and rule (``rule``), or
    nothing (``none``)."""
    from dataclasses import replace

    meta = dict(example.meta)
    tool, rule, level = meta.get("tool", ""), meta.get("rule", ""), meta.get("level", "")
    meta["origin"] = ("" if mode == "none" or not tool
                      else origin_text(tool, rule, level if mode == "full" else ""))
    return replace(example, meta=meta)


def origin_mode(example: Example, seed: int = 0, full: float = 0.5, rule_only: float = 0.2) -> str:
    """A stable choice per item (hash of id and seed): show the full origin, the rule alone, or nothing — so
    the student learns to judge with and without a tool's metadata (LLM and human findings carry none)."""
    draw = int(hashlib.sha256(f"{seed}:{example.id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "full" if draw < full else "rule" if draw < full + rule_only else "none"


def sonar_origin(example: Example) -> Example:
    """Sonar fixture items of the shared severity data carry their rule (``sonar-python-S1234-…``) and Sonar's
    type/severity: give them the same origin fields as other analysers' items."""
    match = re.match(r"sonar-python-(S\d+)-", example.id)
    if not match:
        return example
    from dataclasses import replace

    meta = {**example.meta, "tool": "sonar-python", "rule": match.group(1),
            "level": str(example.meta.get("orig_label", "")), "group": f"sonar-python:{match.group(1)}"}
    return replace(example, meta=meta)


def build(ruff: bool = False, ruff_executable: str = "ruff", sarif: Iterable[str | Path] = (),
          analysers: str | Path | None = None) -> list[Example]:
    """Everything asked for, as Examples (duplicate review texts within one tool dropped, first kept)."""
    records: list[dict[str, Any]] = []
    if ruff:
        rules = ruff_catalogue(ruff_executable)
        if not rules:
            raise TrainingError("ruff's rule catalogue is unavailable",
                                hint="install ruff >= 0.5 or give its path with --ruff-executable")
        records += ruff_records(rules.values(), _ruff_version(ruff_executable))
    for path in sarif:
        try:
            log = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrainingError(f"cannot read SARIF log {path}: {exc}", hint="pass a readable SARIF 2.1.0 file") from None
        records += sarif_records(log, str(path))
    if analysers:
        records += analyser_records(analysers)
    seen: set[tuple[str, str]] = set()
    out = []
    for i, record in enumerate(records):
        key = (record.get("tool", ""), " ".join(str(record.get("review", "")).lower().split()))
        if key in seen:
            continue
        seen.add(key)
        out.append(from_record(record, f"corpus item {i}"))
    return out


def _ruff_version(executable: str) -> str:
    import subprocess

    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip().split()[-1] if done.returncode == 0 and done.stdout.strip() else ""
