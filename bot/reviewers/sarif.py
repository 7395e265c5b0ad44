"""Import SARIF 2.1.0 reports (CodeQL, semgrep, bandit, eslint, ruff …) as findings.

Analysers run wherever they run (often an earlier CI step); Sieve only maps their results onto the
diff. A result's location is ``physicalLocation.artifactLocation.uri`` (possibly ``file://``,
percent-encoded, relative to a ``uriBaseId`` declared in ``originalUriBaseIds``, or an index into
``run.artifacts``) plus a ``region``. A multi-line region is anchored at its start line, or at the
first line inside it that the diff added. Results on lines the diff did not add are dropped and
summarised per file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from bot.errors import ReviewerError
from bot.findings import Finding, ParsedDiff, ReviewerResult, Skip
from bot.reviewers.base import (
    REVIEWERS,
    AddedLines,
    ReviewContext,
    SkipTally,
    anchor_on,
    code_for,
    dedupe,
    line_suggestion,
)
from bot.reviewers.origin import sarif_level, sarif_rationale

SARIF_VERSION = "2.1.0"


@dataclass(frozen=True)
class SarifConfig:
    paths: tuple[str, ...] = field(default=(), metadata={"help": "SARIF 2.1.0 files to import"})
    include_suppressed: bool = field(
        default=False, metadata={"help": "also import results the tool marks as suppressed"})
    required: ClassVar[tuple[str, ...]] = ("paths",)
    required_hint: ClassVar[str] = "pass --sarif FILE (or set sarif = [...] or reviewers.sarif.paths)"


class SarifReviewer:
    """Maps the results of SARIF files onto the diff's added lines."""

    name = "sarif"

    def __init__(self, config: SarifConfig | None = None) -> None:
        self.config = config or SarifConfig()

    def review(self, diff: ParsedDiff, ctx: ReviewContext) -> ReviewerResult:
        added = AddedLines(diff)
        result = ReviewerResult()
        tally = SkipTally()
        for path in self.config.paths:
            log = load_sarif(Path(path))
            for run in log.get("runs") or []:
                self._import_run(run, ctx, added, result, tally)
        result.findings = dedupe(result.findings)
        result.skipped.extend(tally.skips("SARIF result"))
        return result

    def _import_run(self, run: dict[str, Any], ctx: ReviewContext, added: AddedLines,
                    result: ReviewerResult, tally: SkipTally) -> None:
        driver = ((run.get("tool") or {}).get("driver") or {})
        tool = str(driver.get("name") or "unknown")
        rules = _rules_by_id(driver)
        rule_list = driver.get("rules") or []
        bases = _uri_bases(run, ctx.repo_root)
        for item in run.get("results") or []:
            if item.get("kind", "fail") != "fail":
                continue
            if item.get("suppressions") and not self.config.include_suppressed:
                continue
            rule = _rule_of(item, rules, rule_list)
            location = _location(item, run, bases)
            if location is None:
                result.skipped.append(Skip(f"sarif:{tool}", f"a {rule.get('id', 'result')} result has no "
                                                            "file location and cannot be anchored"))
                continue
            path, start, end = location
            line = start if added.hunk_at(path, start) else added.first_in(path, start, end)
            hunk = added.hunk_at(path, line) if line is not None else None
            if hunk is None or line is None:
                tally.add(path, "on lines this diff did not add")
                continue
            message = _message(item, rule)
            result.findings.append(Finding(
                anchor=anchor_on(hunk, line), review=message, source=f"sarif:{tool}",
                code=code_for(hunk, line), rule_id=item.get("ruleId") or rule.get("id"),
                suggestion=_suggestion(item, path, line, ctx, run, bases),
                hint=item.get("level") or (rule.get("defaultConfiguration") or {}).get("level") or "warning",
                level=sarif_level(item, rule), rationale=sarif_rationale(rule, message)))


def load_sarif(path: Path) -> dict[str, Any]:
    """Read and check a SARIF log; every problem is a ReviewerError saying which file and what."""
    try:
        log = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ReviewerError(f"SARIF file {path} does not exist",
                            hint="run the analyser first or fix the path in reviewers.sarif.paths") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewerError(f"cannot read SARIF file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ReviewerError(f"SARIF file {path} is not valid JSON ({exc.msg} at line {exc.lineno})",
                            hint="check that the analyser finished and wrote the whole file") from None
    if not isinstance(log, dict):
        raise ReviewerError(f"SARIF file {path} does not hold a JSON object",
                            hint="pass a SARIF log, not another report format")
    version = log.get("version")
    if version != SARIF_VERSION:
        raise ReviewerError(f"SARIF file {path} has version {version!r}; Sieve reads SARIF {SARIF_VERSION}",
                            hint="ask the analyser for SARIF 2.1.0 output")
    if not isinstance(log.get("runs"), list):
        raise ReviewerError(f"SARIF file {path} has no 'runs' list", hint="the file is not a SARIF log")
    return log


def _rules_by_id(driver: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(rule["id"]): rule for rule in driver.get("rules") or [] if isinstance(rule, dict) and "id" in rule}


def _rule_of(item: dict[str, Any], rules: dict[str, dict[str, Any]], rule_list: list[Any]) -> dict[str, Any]:
    """The rule metadata of a result, by ``ruleId``, ``rule.id`` or ``rule.index``/``ruleIndex``."""
    rule_id = item.get("ruleId") or (item.get("rule") or {}).get("id")
    if rule_id is not None and str(rule_id) in rules:
        return rules[str(rule_id)]
    index = item.get("ruleIndex", (item.get("rule") or {}).get("index"))
    if isinstance(index, int) and 0 <= index < len(rule_list) and isinstance(rule_list[index], dict):
        return rule_list[index]
    return {"id": rule_id} if rule_id is not None else {}


def _message(item: dict[str, Any], rule: dict[str, Any]) -> str:
    """The result's own text, else the rule's short (then full) description, else its id."""
    message = item.get("message") or {}
    for text in (message.get("text"), message.get("markdown"),
                 (rule.get("shortDescription") or {}).get("text"),
                 (rule.get("fullDescription") or {}).get("text")):
        if isinstance(text, str) and text.strip():
            return text.strip()
    return f"{rule.get('id') or 'unnamed rule'} reported a problem"


def _uri_bases(run: dict[str, Any], repo_root: Path | None) -> dict[str, str]:
    """``uriBaseId`` → absolute base path (POSIX), resolved through ``originalUriBaseIds`` chains."""
    declared = run.get("originalUriBaseIds") or {}
    resolved: dict[str, str] = {}

    def resolve(name: str, depth: int = 0) -> str:
        if name in resolved or depth > 8:
            return resolved.get(name, "")
        entry = declared.get(name) or {}
        uri = _uri_path(str(entry.get("uri", "")))
        parent = entry.get("uriBaseId")
        if parent and not PurePosixPath(uri).is_absolute():
            uri = str(PurePosixPath(resolve(parent, depth + 1)) / uri) if uri else resolve(parent, depth + 1)
        resolved[name] = uri
        return uri

    for name in declared:
        resolve(name)
    if repo_root is not None:
        resolved.setdefault("%SRCROOT%", repo_root.as_posix())
        resolved.setdefault("SRCROOT", repo_root.as_posix())
    return resolved


def _uri_path(uri: str) -> str:
    """A SARIF URI → a POSIX path: ``file://`` stripped, percent-decoding undone."""
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        return unquote(parts.path)
    return unquote(uri)


def _location(item: dict[str, Any], run: dict[str, Any], bases: dict[str, str]) -> tuple[str, int, int] | None:
    """(repo-relative path, start line, end line) of a result's first physical location."""
    for location in item.get("locations") or []:
        physical = (location or {}).get("physicalLocation") or {}
        artifact = physical.get("artifactLocation") or {}
        if "uri" not in artifact and isinstance(artifact.get("index"), int):
            artifacts = run.get("artifacts") or []
            if 0 <= artifact["index"] < len(artifacts):
                artifact = {**(artifacts[artifact["index"]].get("location") or {}), **artifact}
        region = physical.get("region") or {}
        start = region.get("startLine")
        if not artifact.get("uri") or not isinstance(start, int):
            continue
        end = region.get("endLine") if isinstance(region.get("endLine"), int) else start
        return _repo_path(str(artifact["uri"]), artifact.get("uriBaseId"), bases), start, max(start, end)
    return None


def _repo_path(uri: str, base_id: str | None, bases: dict[str, str]) -> str:
    """Make a result's URI relative to the repository: strip its base, or the repo root."""
    path = _uri_path(uri)
    if not PurePosixPath(path).is_absolute() and base_id and bases.get(base_id):
        path = str(PurePosixPath(bases[base_id]) / path)
    pure = PurePosixPath(path)
    if pure.is_absolute():
        for base in sorted({*bases.values()}, key=len, reverse=True):
            if base and PurePosixPath(base).is_absolute() and pure.is_relative_to(base):
                return pure.relative_to(base).as_posix()
        return pure.as_posix()
    return pure.as_posix().removeprefix("./")


def _suggestion(item: dict[str, Any], path: str, line: int, ctx: ReviewContext, run: dict[str, Any],
                bases: dict[str, str]) -> str | None:
    """The new text of the anchored line from the result's first fix, if that fix stays on that line.

    A ``deletedRegion`` without columns covers whole lines (their line breaks included).
    """
    fixes = item.get("fixes") or []
    changes = (fixes[0].get("artifactChanges") or []) if fixes and isinstance(fixes[0], dict) else []
    edits = []
    for change in changes:
        artifact = change.get("artifactLocation") or {}
        if _repo_path(str(artifact.get("uri", "")), artifact.get("uriBaseId"), bases) != path:
            return None
        for replacement in change.get("replacements") or []:
            region = replacement.get("deletedRegion") or {}
            start, end = region.get("startLine"), region.get("endLine", region.get("startLine"))
            if not isinstance(start, int) or not isinstance(end, int):
                return None
            whole = "endColumn" not in region
            edits.append({"location": {"row": start, "column": region.get("startColumn", 1)},
                          "end_location": {"row": end + 1 if whole else end, "column": region.get("endColumn", 1)},
                          "content": (replacement.get("insertedContent") or {}).get("text", "")})
    content = ctx.read_file(path) if edits else None
    if content is None:
        return None
    return line_suggestion(content.decode("utf-8", errors="replace"), line, edits)


@REVIEWERS.register("sarif", options=SarifConfig)
def make_sarif(config: SarifConfig | None = None) -> SarifReviewer:
    return SarifReviewer(config)
