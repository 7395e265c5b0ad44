"""What the OpenAI-compatible teacher is asked, and how its answers are checked (pure: no I/O, no SDK).

The prompts and JSON schemas of exam writing, grading and training-data writing; the validation that keeps
only well-formed, new items; and the reading of label probabilities from an answer's top log-probabilities.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bot.severity import LABELS, MEANINGS
from training.exam import item_key
from training.examples import Example

LEVEL_TEXT = "".join(f"- {label}: {text}\n" for label, text in MEANINGS.items())

EXAM_PROMPT = (
    "You are preparing an exam for a small student model whose only job is to rate how severe the issue "
    "in a code review comment is.\nSeverity levels:\n" + LEVEL_TEXT +
    "Write {n} exam items. Each item has: 'code' — a realistic excerpt of a code change (a unified-diff hunk "
    "or a few lines of source), 'review' — the comment a careful reviewer would leave on it, and 'label' — "
    "the correct severity level of the issue that comment describes. Spread the items evenly over the four "
    "levels, vary languages and kinds of problem, and make some items hard (a serious bug worded politely, "
    "a harmless nit worded alarmingly). No two items may be alike.{focus}\n"
    'Return only JSON: {{"items": [{{"code": "...", "review": "...", "label": "critical|major|minor|trivial"}}]}}'
)

EXAM_EVALUATION_PROMPT = (
    "You examined a small student model that rates the severity of code review findings.\nSeverity levels:\n"
    + LEVEL_TEXT +
    "For each exam item below you see the code, the review, the correct level and the student's answer with "
    "its confidence. Evaluate the student:\n"
    "1. 'proficiency': a score from 1 (no grasp) to 10 (expert) overall and for each level;\n"
    "2. 'feedback': two or three sentences on what the student confuses and why;\n"
    "3. 'weak_areas': the levels (by name) or kinds of finding it handles worst, worst first;\n"
    "4. 'examples': {n} new training items, shaped like the exam items, that teach exactly what it got wrong.\n"
    "Return only JSON matching the schema.\n\nExam:\n{exam}"
)

TRAINING_PROMPT = (
    "You are writing training data for a small model that rates the severity of code review findings.\n"
    "Severity levels:\n" + LEVEL_TEXT +
    "Write {n} new items, each with 'code' (a realistic code excerpt or diff hunk), 'review' (the reviewer's "
    "comment) and 'label' (the correct level). Concentrate on: {focus}. Each item must differ from the others.\n"
    'Return only JSON: {{"items": [{{"code": "...", "review": "...", "label": "critical|major|minor|trivial"}}]}}'
)

_ITEM = {"type": "object", "additionalProperties": False, "required": ["code", "review", "label"],
         "properties": {"code": {"type": "string"}, "review": {"type": "string"},
                        "label": {"type": "string", "enum": list(LABELS)}}}
ITEMS_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["items"],
                "properties": {"items": {"type": "array", "items": _ITEM}}}
EVALUATION_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["proficiency", "feedback", "weak_areas", "examples"],
    "properties": {
        "proficiency": {"type": "object", "additionalProperties": False, "required": ["overall", *LABELS],
                        "properties": {k: {"type": "integer", "minimum": 1, "maximum": 10}
                                       for k in ("overall", *LABELS)}},
        "feedback": {"type": "string"},
        "weak_areas": {"type": "array", "items": {"type": "string"}},
        "examples": {"type": "array", "items": _ITEM}}}


def validate_items(raw: Any, seen: set[str], origin: str) -> tuple[list[Example], list[str]]:
    """Keep well-formed, new items; say why each other one was rejected. Adds kept keys to ``seen``."""
    kept: list[Example] = []
    rejected: list[str] = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict):
            rejected.append(f"item {i}: not an object")
            continue
        code, review = str(item.get("code") or "").strip(), str(item.get("review") or "").strip()
        label = str(item.get("label") or "").strip().lower()
        reason = ("unknown label " + repr(item.get("label")) if label not in LABELS else
                  "empty code" if not code else "empty review" if not review else "")
        if reason:
            rejected.append(f"item {i}: {reason}")
            continue
        example = Example(code=code, review=review, label=label, source=f"teacher:{origin}")
        key = item_key(example)
        if key in seen:
            rejected.append(f"item {i}: duplicate")
            continue
        seen.add(key)
        example.id = f"teacher-{key[:16]}"
        kept.append(example)
    if not isinstance(raw, list):
        rejected.append("no item list in the answer")
    return kept, rejected


def soft_from_logprobs(response: Any) -> dict[str, float] | None:
    """Label probabilities from the first answer token's top-logprobs (None when absent or unmatched)."""
    try:
        top = response.choices[0].logprobs.content[0].top_logprobs
    except (AttributeError, IndexError, TypeError):
        return None
    mass = {label: 0.0 for label in LABELS}
    for entry in top or []:
        token = str(entry.token).strip().strip('"').lower()
        matches = [label for label in LABELS if len(token) >= 2 and label.startswith(token)]
        if len(matches) == 1:
            mass[matches[0]] += math.exp(entry.logprob)
    total = sum(mass.values())
    return {label: p / total for label, p in mass.items()} if total > 0 else None


def _parse_json(text: str) -> Any:
    """JSON from a model answer, tolerating a Markdown code fence around it; None when it is not JSON."""
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None
