"""The explanation teacher: the vendors' own words on why a rule matters, bound to one concrete finding.

Sources (no endpoint needed): ``../shared/data/analysers/rationale.jsonl`` — for CodeQL, clippy, staticcheck and
ESLint rules, the vendor's "what it does" and "why it is bad" prose — joined with the findings of
``analysers.jsonl`` (the alert message a developer sees, the vendor's level mapped to ours); and ruff's own
catalogue (``ruff rule --all``: message formats, "What it does", "Why is this bad?", the bad example's code).

The teacher writes one sentence per finding (:func:`compose`): it picks the vendor sentence that states a risk
(not "Checks for …"), short enough, naming no identifier the finding does not show and not contradicting the
rating — the same checks the served sentence must pass (:func:`bot.explain.problem`) — and, when the finding's
own text names something concrete (`` `os` imported but unused``), leads with that, so the sentence is about
*this* finding rather than the rule in general. Among the sentences that pass, one that spells out a
consequence ("… can leak", "… results in") wins over one that only says what a construct is. A finding for which
no vendor sentence passes gets no example: the student learns only from sentences it would be allowed to say.

Consistent with the rating: :func:`keep_consistent` clears a sentence the severity student, re-rating it alone,
reads as more than one level from the finding's rating (the benchmark's own measure,
:func:`training.explain_eval.verdicts`); ``training.explain_train`` runs it on the training rules before drawing.

Held out: a fixed share of each tool's rules, grouped by rule (both rows of a rule on one side), chosen by a
seeded hash, never trained on (:func:`split`). ``benchmarks/explanations.py`` scores the held-out rules against
the vendor's own rationale.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot import explain
from bot.errors import TrainingError
from bot.prompt import origin_text
from training.corpus import RUFF_CATEGORIES
from training.examples import shared_dir

HELD_OUT_SHARE = 0.15
SEED = 0
MAX_TARGET_WORDS = 28
#: names put into ruff's message placeholders (``{name}``), so an example shows a concrete identifier
_NAMES = ("os", "json", "user_id", "order", "config", "items", "result", "path", "value", "request", "session",
          "data", "handler", "total", "name", "response", "cache", "client", "payload", "timeout")


@dataclass(frozen=True)
class Item:
    """One finding with its rating and the vendor's prose; ``target`` is the teacher's sentence ("" if none)."""

    id: str
    group: str  # tool:rule — the unit of the held-out split
    tool: str
    rule: str
    review: str
    severity: str
    code: str = ""
    origin: str = ""
    what: str = ""
    why: str = ""
    target: str = ""

    def request(self) -> explain.Request:
        return explain.Request(review=self.review, severity=self.severity, code=self.code, origin=self.origin,
                               rationale=self.shown_rule)

    @property
    def shown_rule(self) -> str:
        """The rule's rationale as the explainer reads it (:func:`bot.explain.rule_text`), for a finding that shows
        its origin — as at serving, where an analyser's finding has both and an LLM's neither; "" otherwise."""
        return explain.rule_text(self.why, self.what) if self.origin else ""

    @property
    def rationale(self) -> str:
        """The vendor's own words for this rule (the reference explanations are scored against)."""
        return " ".join(x for x in (self.why, self.what) if x)


# ----------------------------------------------------------------------------- the teacher

_RISK = re.compile(r"\b(can|may|could|might|lead\w*|caus\w*|result\w*|allow\w*|risk\w*|error\w*|bug\w*|panic\w*|"
                   r"crash\w*|slow\w*|confus\w*|hard\w*|readab\w*|unexpected\w*|incorrect\w*|fail\w*|leak\w*|"
                   r"attack\w*|inject\w*|expensive|unnecessar\w*|overhead|mislead\w*|mistake\w*|surpris\w*|wrong|"
                   r"never|always|lost|ignor\w*|hide\w*|hidden|mask\w*|break\w*|unsafe|insecure|vulnerab\w*)\b",
                   re.IGNORECASE)
_DESCRIPTIVE = re.compile(r"^(checks?|lints?|this (rule|lint|query|check)|enforces?|disallows?|requires?|"
                          r"reports?|detects?|finds?|looks for|warns?|flags?|identif\w+)\b", re.IGNORECASE)
_NAMED = re.compile(r"`[^`]+`|'[A-Za-z_][\w.]*'|\"[A-Za-z_][\w.]*\"")


sentences = explain.sentences


#: openings of sentences that hang on another one, and talk about the tool rather than the code
_DEPENDENT = re.compile(r"^(however|if|note|for example|also|instead|see|alternatively|this is because|in this case|"
                        r"in the (former|latter) case|in particular|in both cases|"
                        r"otherwise|similarly|thus|so|but|and)\b", re.IGNORECASE)
_ABOUT_TOOL = re.compile(r"\b(eslint|clippy|codeql|staticcheck|ruff|this (rule|lint|query|check)|option\w*|"
                         r"configur\w*|parser)\b", re.IGNORECASE)


#: a consequence spelled out: what happens because of the finding, not only what kind of thing it is
_CONSEQUENCE = re.compile(r"\b(lead(s|ing)? to|result(s|ing)? in|caus(e|es|ed|ing)|allows? (an? )?(attacker|caller|user)|"
                          r"(can|may|might|could|will) (not |never |silently |easily |also )?(lead|result|cause|make|"
                          r"introduce|hide|mask|break|fail|crash|raise|panic|leak|allow|lose|corrupt|confuse|mislead|"
                          r"slow|hang|run|trigger|throw|miss|expose|overwrite|produce|return|behave|change|block|"
                          r"deadlock|shadow|surprise|go)\w*|otherwise|so that|which means|at runtime|raises? an?|"
                          r"throws? an?|in production)\b", re.IGNORECASE)
#: a sentence that leads into something the teacher does not take along (a list, an example)
_LEAD_IN = re.compile(r":\s*\d+\.?$|\b(as follows|the following|like this|for example|such as this)\b", re.IGNORECASE)
#: a sentence that only says what a construct is or is for ("The `yield` keyword is used to …")
_DEFINITION = re.compile(r"\b(is|are) (used|meant|intended) (to|for)\b|^(the|a|an) [^,.;]{0,40} (is|are) (a|an) ",
                         re.IGNORECASE)


def _score(sentence: str, order: int) -> float:
    """Higher for a sentence that states a risk, higher still when it states the consequence; lower for rule
    descriptions, definitions, dependent sentences, tool talk."""
    score = 2.0 * bool(_RISK.search(sentence)) - 3.0 * bool(_DESCRIPTIVE.search(sentence))
    score += 1.5 * bool(_CONSEQUENCE.search(sentence)) - 1.0 * bool(_DEFINITION.search(sentence))
    score -= 1.5 * bool(_DEPENDENT.search(sentence)) + 1.5 * bool(_ABOUT_TOOL.search(sentence))
    return score - 0.1 * order


def subject(review: str, rule: str = "") -> str:
    """The finding's own words when they name something concrete (a backticked or quoted name), without a
    leading rule code: ``F401 `os` imported but unused`` → ``` `os` imported but unused ```; "" otherwise."""
    text = " ".join(review.split())
    if rule and text.startswith(rule + " "):
        text = text[len(rule) + 1:]
    text = text.split(";")[0].rstrip(" .:")
    if not _NAMED.search(text) or len(text.split()) > 12:
        return ""
    return text[:1].upper() + text[1:]


def compose(item: Item) -> str:
    """The teacher's sentence for one finding, or "" when no vendor sentence may be said of it."""
    options = ranked(item)
    return options[0] if options else ""


def ranked(item: Item) -> list[str]:
    """Every sentence the teacher may say of one finding, best first (:func:`_score`; a sentence that scores
    below zero is never said), each led by the finding's own subject where :func:`compose` would lead it."""
    request = item.request()
    # a finding that shows its rule's rationale is taught a sentence from what it is shown (the explainer learns
    # to pick and bind, not to recall); one without (an LLM-like finding) from all of the vendor's prose
    shown = request.rationale
    candidates = [(s, i) for i, s in enumerate(sentences(shown) if shown else
                                               sentences(item.why) + sentences(item.what))]
    scored: list[tuple[float, int, str]] = []
    for sentence, order in candidates:
        sentence = sentence.rstrip(":;,")
        sentence += "" if sentence.rstrip("\"'”)").endswith((".", "!", "?")) else "."
        if not 5 <= len(sentence.split()) <= MAX_TARGET_WORDS or "…" in sentence or _LEAD_IN.search(sentence):
            continue
        if explain.problem(sentence, request):
            continue
        score = _score(sentence, order)
        if score >= 0:
            scored.append((-score, order, sentence))
    lead = subject(item.review, item.rule)
    out: list[str] = []
    for _, _, best in sorted(scored):
        if lead and not any(name.lower() in best.lower() for name in explain.identifiers(lead)):
            joined = f"{lead}: {best[:1].lower() + best[1:]}"
            if len(joined.split()) <= MAX_TARGET_WORDS + 4 and not explain.problem(joined, request):
                best = joined
        if best not in out:
            out.append(best)
    return out


def keep_consistent(items: list[Item], rerate, batch: int = 32, progress=None,
                    tries: int = 3) -> tuple[list[Item], dict]:
    """``items`` with each teacher's sentence checked for consistency with the finding's rating as the benchmark
    measures it (:func:`training.explain_eval.verdicts`): its words must not contradict the rating, and the
    severity student (``rerate``: (code, text, origin) triples → severities), re-rating the sentence alone, must
    land at most one level away. A sentence that fails gives way to the teacher's next one for that finding
    (:func:`ranked`, up to ``tries`` in all); a finding none of whose tried sentences passes is left without
    one. The student is never taught a reason it would itself read as another severity, and is taught, where the
    vendor offers one, the reason that does read as the rating. Returns the items (same order) and the counts
    (``replaced``: findings taught a later sentence than the teacher's first)."""
    from dataclasses import replace

    from training.explain_eval import verdicts

    out = list(items)
    options: dict[int, list[str]] = {}
    for i, item in enumerate(items):
        if item.target:
            options[i] = [item.target] + [o for o in ranked(item) if o != item.target]
    counts = {"rated": len(options), "dropped_contradicts": 0, "dropped_rerated_far": 0, "kept": 0, "replaced": 0}
    remaining, last, done = list(options), {}, 0
    for attempt in range(max(1, tries)):
        tried = [i for i in remaining if attempt < len(options[i])]
        found: list[dict] = []
        for start in range(0, len(tried), batch):
            chunk = tried[start: start + batch]
            found += verdicts([options[i][attempt] for i in chunk], [items[i].request() for i in chunk], rerate)
            done += len(chunk)
            if progress:
                progress(done, len(options))
        remaining = []
        for i, verdict in zip(tried, found):
            if not verdict["contradicts"] and verdict["within_one"]:
                counts["kept"] += 1
                counts["replaced"] += attempt > 0
                out[i] = replace(items[i], target=options[i][attempt])
                last.pop(i, None)
            else:
                last[i] = verdict
                remaining.append(i)
    for i, verdict in last.items():  # every sentence tried for this finding reads as another severity
        counts["dropped_contradicts" if verdict["contradicts"] else "dropped_rerated_far"] += 1
        out[i] = replace(items[i], target="")
    return out, counts


def contrasts(items: list[Item], rerate, batch: int = 32, progress=None) -> tuple[list[Item], dict]:
    """Counterfactual items that teach the explainer to let the ``Severity:`` line choose the reason.

    At serving the rating it explains is not always the vendor's: the student may rate otherwise, and feedback
    memory moves ratings ("rated trivial, not major"). A finding whose teacher's sentences the severity student
    reads as different levels (``rerate``: (code, text, origin) triples → severities, the re-reading of
    :func:`training.explain_eval.verdicts`) gets, for each other level ``L``, a copy rated ``L`` and taught the
    teacher's best sentence that is consistent with ``L`` and *not* with the finding's own rating — so the same
    finding, with the same rule text, is taught two different reasons for two different ratings. Items without a
    target, or whose sentences all read alike, get none. Returns the new items (ids ``<id>@<level>``) and counts."""
    from dataclasses import replace

    from bot.severity import LABELS

    options = {i: ranked(item) for i, item in enumerate(items) if item.target}
    pending = sorted({(items[i].code, s) for i, opts in options.items() for s in opts})
    readings: dict[tuple[str, str], str] = {}
    for start in range(0, len(pending), batch):
        chunk = pending[start: start + batch]
        for key, severity in zip(chunk, rerate([(code, text, "") for code, text in chunk])):
            readings[key] = severity
        if progress:
            progress(min(start + batch, len(pending)), len(pending))

    def fits(item: Item, sentence: str, level: str) -> bool:
        return (not explain.contradicts(sentence, level)
                and explain.reads_as(readings.get((item.code, sentence), ""), level))

    out: list[Item] = []
    for i, item in enumerate(items):
        if i not in options:
            continue
        for level in LABELS:
            if level == item.severity:
                continue
            other = replace(item, severity=level, id=f"{item.id}@{level}", target="")
            for sentence in ranked(other):  # the teacher's order, checked for the other rating
                if fits(item, sentence, level) and not fits(item, sentence, item.severity):
                    out.append(replace(other, target=sentence))
                    break
    counts = {"findings": len(options), "sentences_rated": len(pending), "contrasts": len(out),
              "findings_with_contrast": len({item.id.rsplit("@", 1)[0] for item in out})}
    return out, counts


# ----------------------------------------------------------------------------- sources


_markdown_section = explain.markdown_section


def _example_code(markdown: str) -> str:
    """The last lines of the first code block under ``## Example`` (the code the rule fires on)."""
    section = re.search(r"^##\s*Example\s*$(.*?)(?=^##\s|\Z)", markdown or "", re.MULTILINE | re.DOTALL)
    block = re.search(r"```\w*\n(.*?)```", section.group(1), re.DOTALL) if section else None
    return "\n".join(block.group(1).strip().splitlines()[-3:]) if block else ""


_PROSE_SLOT = re.compile(r"tip|message|msg|reason|help|suggest|fix|detail|explanation", re.IGNORECASE)


def _fill(template: str, rng: random.Random) -> str:
    """A message template with each name slot given a plausible name and each prose slot (``{tip}``) dropped."""
    filled = re.sub(r"\{\{?\s*(\w*)\s*\}?\}",
                    lambda m: "" if _PROSE_SLOT.search(m.group(1)) else rng.choice(_NAMES), template)
    return " ".join(filled.split()).replace(" .", ".").rstrip(" .") + ("." if filled.rstrip().endswith(".") else "")


def ruff_items(rules: Iterable[Mapping[str, Any]]) -> list[Item]:
    """Items from ruff's catalogue: each message format with its placeholders filled by a plausible name, the
    bad example's last lines as code, the category's level as severity."""
    out = []
    for rule in rules:
        code, category = str(rule.get("code") or ""), str(rule.get("category") or "")
        if not code or category not in RUFF_CATEGORIES or rule.get("preview"):
            continue
        doc = str(rule.get("explanation") or "")
        what, why = _markdown_section(doc, "What it does"), _markdown_section(doc, "Why is this bad?")
        formats = [f for f in rule.get("message_formats") or [] if isinstance(f, str)][:2]
        rng = random.Random(f"{SEED}:{code}")
        for k, message in enumerate(formats):
            review = f"{code} {_fill(message, rng)}"
            show_code = _example_code(doc) if k == 0 else ""
            out.append(Item(id=f"ruff:{code}:{k}", group=f"ruff:{code}", tool="ruff", rule=code, review=review,
                            severity=RUFF_CATEGORIES[category][0], code=show_code,
                            origin=_origin("ruff", code, category, f"ruff:{code}:{k}"), what=what, why=why))
    return out


def analyser_items(analysers: Path, rationale: Path) -> list[Item]:
    """Items from the shared vendor rows joined with the vendor's rationale (rules without one are left out)."""
    prose = {}
    for row in _jsonl(rationale):
        prose[f"{row['tool']}:{row['rule']}"] = (str(row.get("what") or ""), str(row.get("why") or ""))
    out = []
    for row in _jsonl(analysers):
        group = str(row.get("group") or f"{row.get('tool')}:{row.get('rule')}")
        if group not in prose:
            continue
        rng = random.Random(f"{SEED}:{row['id']}")
        tool, rule = str(row.get("tool", "")), str(row.get("rule", ""))
        out.append(Item(id=str(row["id"]), group=group, tool=tool, rule=rule, review=_fill(row["review"], rng),
                        severity=str(row["label"]), origin=_origin(tool, rule, str(row.get("orig_label") or ""),
                                                                   str(row["id"])),
                        what=prose[group][0], why=prose[group][1]))
    return out


def _origin(tool: str, rule: str, level: str, key: str) -> str:
    """Most items show their origin (analysers' findings carry one); a seeded 30% show none, as LLM findings."""
    draw = int(hashlib.sha256(f"{SEED}:origin:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "" if draw < 0.3 else origin_text(tool, rule, level)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read {path}: {exc}", hint="point at ../shared/data/analysers") from None


# ----------------------------------------------------------------------------- the split


def held_out(group: str, share: float = HELD_OUT_SHARE, seed: int = SEED) -> bool:
    """True for a rule in the held-out share (a seeded hash of ``tool:rule``: stable, order-free)."""
    draw = int(hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return draw < share


def split(items: Iterable[Item], share: float = HELD_OUT_SHARE, seed: int = SEED) -> tuple[list[Item], list[Item]]:
    """(train, held-out) by rule: no rule is on both sides."""
    train, test = [], []
    for item in items:
        (test if held_out(item.group, share, seed) else train).append(item)
    return train, test


def build(ruff_rules: Iterable[Mapping[str, Any]] | None = None, data_dir: Path | None = None) -> list[Item]:
    """Every item of both sources, each with the teacher's sentence (possibly "")."""
    folder = Path(data_dir) if data_dir else shared_dir() / "data" / "analysers"
    items = analyser_items(folder / "analysers.jsonl", folder / "rationale.jsonl")
    if ruff_rules is not None:
        items += ruff_items(ruff_rules)
    from dataclasses import replace

    return [replace(item, target=compose(item)) for item in items]


def data_hash(items: Iterable[Item]) -> str:
    """Order-independent sha256 of the training items (what the manifest records)."""
    lines = sorted(json.dumps(asdict(item), sort_keys=True) for item in items)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def sample(items: list[Item], n: int, seed: int = SEED, ruff_share: float | None = None) -> list[Item]:
    """At most ``n`` items with a target, the same share from each tool; with ``ruff_share``, that share of the
    ``n`` from ruff (the analyser Sieve runs by default) and the rest from the other tools alike."""
    usable = [item for item in items if item.target]
    if len(usable) <= n:
        return usable
    rng = random.Random(seed)
    by_tool: dict[str, list[Item]] = {}
    for item in usable:
        by_tool.setdefault(item.tool, []).append(item)
    quota = {}
    others = sum(len(g) for tool, g in by_tool.items() if ruff_share is None or tool != "ruff")
    for tool, group in by_tool.items():
        if ruff_share is not None and tool == "ruff":
            quota[tool] = round(n * ruff_share)
        else:
            room = n if ruff_share is None else n - round(n * ruff_share)
            quota[tool] = round(room * len(group) / max(1, others))
    out: list[Item] = []
    for tool, group in sorted(by_tool.items()):
        rng.shuffle(group)
        out += group[: quota[tool]]
    rng.shuffle(out)
    return out[:n]
