"""PURE team memory: trusted reactions and corrections adjust the ratings of findings *like* the ones reacted to.

Retraining makes a team's judgement part of the student, but it takes an hour and a review; memory applies the
same feedback on the very next review. It is deliberately small and inspectable: every adjustment comes from one
*entry* (a scope plus the maintainers who spoke about it), shows up in the comment and the JSON output, and can be
revoked (``sieve feedback memory revoke ID``).

What "like" means (most specific first; the first entry that applies wins, none are mixed):

1. ``exact``   — the same tool, rule, file and review text (what the reaction was on, wherever its line moved);
2. ``path``    — the same tool and rule in files sharing a path feature (a directory such as ``tests/``, a file
   name such as ``__init__.py``, a name pattern such as ``test_*.py``), learned only where that feature separates
   the rule's 👍 from its 👎 and holds the 👎 (``S101`` 👎 in ``tests/`` but 👍 elsewhere; never the reverse);
3. ``rule``    — the same tool and rule anywhere (findings without a tool — LLM reviewers — use their review text
   with names, numbers and quoted words masked as the "rule");
4. ``family`` and ``family-path`` — rules of the same tool sharing their prefix and first digit (ruff's ``D1`` =
   D100…D107), learned only from 👎: when at least two of its rules were turned down and none was wanted; this is
   how a rule nobody reacted to yet inherits the team's view. (A 👍 does not generalise beyond its rule: teams
   select whole families and turn single rules off by name.) Never used to push a security finding below major.

An entry that has at least two voters who do not agree (as many 👍 as 👎) applies no change and hides the broader
entries behind it: the team spoke about this scope and did not agree.

The one combination rule (``adjust``): with the student's probabilities ``p``, an entry whose agreeing voters
point at level ``t`` (👍: *at least* the level the comment was posted at; 👎: *at most* the level below the posting
threshold, or below the posted level if lower; ``/sieve severity L``: exactly at ``L`` from that side)

    p'(l) ∝ p(l) · exp(−λ · steps(l, t)),   λ = 5 · min(4, agreeing − disagreeing maintainers)

where ``steps`` counts severity levels on the wrong side of ``t`` (0 on the right side). Votes are per distinct
trusted maintainer (one voter's several reactions in a scope count once, by their own majority), so strength
grows with how many maintainers agree and shrinks with disagreement, and a maintainer's occasional mistaken
reaction is outvoted by their others.

Poisoning guards: only trusted reactions reach this module (the store filters them); an entry broader than
``exact`` needs two distinct agreeing maintainers, so one account can move at most the exact findings it reacted
to; and a security finding (ruff ``S`` rules, bandit, a ``security`` level, SARIF ``security-severity`` ≥ 7) is
never pushed below major unless two distinct maintainers agree in a rule-level or narrower entry: otherwise a 👎
may at most move it from critical to major, and is not applied where the result would fall below major.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from bot.findings import Finding, MemoryNote, Rating
from bot.severity import LABELS, Severity, argmax_label, mass_at_least

#: strength per net agreeing maintainer (see the module docstring); measured on benchmarks/team.py, where the
#: student is often 99% sure of a level, 5 lets two agreeing maintainers move it and one cannot quite alone
BETA = 5.0
#: how many distinct agreeing maintainers an entry of each kind needs before it applies
NEEDED = {"exact": 1, "path": 2, "rule": 2, "family-path": 2, "family": 2}
#: net voters beyond this add no strength (keeps probabilities away from 0 and 1 in floating point)
MAX_NET = 4
_RANK = {label: int(Severity[label.upper()]) for label in LABELS}  # trivial 0 … critical 3
_BY_RANK = {rank: label for label, rank in _RANK.items()}
_RUFF_CODE = re.compile(r"^([A-Z]{1,4}[0-9]{2,4})\b")
_FAMILY = re.compile(r"^([A-Za-z]+[0-9])")


@dataclass(frozen=True)
class Reaction:
    """One trusted maintainer's feedback on one remembered comment (their latest vote and correction)."""

    comment: str  # the comment's key in the store ("host/repo/id")
    repo: str
    source: str  # reviewer name as in Finding.source ("ruff", "sarif:bandit", "llm")
    rule: str  # rule id ("" when the reviewer has none)
    path: str
    review: str
    posted: str  # the level the comment was posted at
    user: str
    vote: int  # +1, -1, or 0 (only a correction)
    correction: str | None = None

    @property
    def tool(self) -> str:
        return tool_of(self.source)


@dataclass(frozen=True)
class Stance:
    """What one maintainer's feedback on one comment asks for: ``direction`` +1 (post it, at least ``level``) or -1
    (do not, at most ``level``)."""

    user: str
    direction: int
    level: str
    corrected: bool = False


@dataclass(frozen=True)
class Entry:
    """One learned scope and what the maintainers who spoke about it want."""

    id: str
    kind: str  # exact, path, rule, family-path, family
    tool: str
    key: str  # rule id, family prefix ("D1") or "text:<template>"
    where: str  # path feature ("dir:tests") for path kinds, the file for exact, else ""
    text: str  # normalised review for exact, else ""
    direction: int  # +1 / -1 of the majority; 0 when the voters are split evenly
    target: str  # the level the majority points at
    agree: int  # distinct maintainers in the majority
    against: int  # distinct maintainers against it
    comments: int  # remembered comments behind the entry
    voters: tuple[Stance, ...] = ()  # one merged stance per maintainer who spoke
    features: frozenset[str] = frozenset()  # path features of the comments behind a rule entry
    rules: tuple[str, ...] = ()  # for family entries: the reacted rules it was learned from
    corrected: int = 0  # agreeing maintainers whose stance is a `/sieve severity` correction
    revoked: bool = False

    @property
    def active(self) -> bool:
        """Applies to findings: not revoked, enough agreeing maintainers, more for than against."""
        return not self.revoked and self.agree >= NEEDED[self.kind] and self.agree > self.against

    @property
    def blocking(self) -> bool:
        """The team spoke about this scope (two or more voters) and did not agree: no change, and broader entries
        do not apply either."""
        return not self.revoked and self.agree + self.against >= 2 and self.agree <= self.against

    def scope_text(self) -> str:
        """``ruff S101 in tests/``, ``ruff D1* (D100, D103)``, ``llm findings like this``…"""
        name = f"{self.tool} {self.key}" if self.tool else "findings like this"
        if self.kind.startswith("family"):
            name = f"{self.tool} {self.key}* ({', '.join(self.rules)})"
        if self.kind == "exact":
            return f"{name} in {self.where} (this finding)"
        if self.kind in ("path", "family-path"):
            return f"{name} in {show_feature(self.where)}"
        return name

    def direction_text(self) -> str:
        if self.direction > 0:
            return f"up (at least {self.target})"
        if self.direction < 0:
            return f"down (at most {self.target})"
        return "split (no change)"


@dataclass
class Memory:
    """Entries by scope key, learned rule by rule as look-ups need them (bot.memory_learn.Learner)."""

    learner: Any = None  # bot.memory_learn.Learner
    index: dict[tuple[str, ...], Entry] = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def _learn(self, tool: str, key: str, family: str | None) -> None:
        if self.learner is not None and (tool, key) not in self._seen:
            self._seen.add((tool, key))
            for e in self.learner.entries_for(tool, key, family):
                self.index[index_key(e)] = e

    @property
    def entries(self) -> list[Entry]:
        """Every entry, most specific kinds first."""
        if self.learner is not None:
            for e in self.learner.everything():
                self.index[index_key(e)] = e
        order = {"exact": 0, "path": 1, "rule": 2, "family-path": 3, "family": 4}
        return sorted(self.index.values(), key=lambda e: (order[e.kind], e.tool, e.key, e.where, e.text, e.id))

    @property
    def empty(self) -> bool:
        return self.learner is None or not self.learner.by_rule

    def lookup(self, finding: Finding) -> Entry | None:
        """The first entry that applies to ``finding`` in the order of specificity, or None."""
        tool, key = finding_key(finding.source, finding.rule_id, finding.review)
        path = finding.anchor.path
        features = path_features(path)
        family = family_of(key) if tool else None
        self._learn(tool, key, family)
        index = self.index
        rule = index.get(("rule", tool, key))
        siblings = _widest(index.get(("family-path", tool, family, f)) for f in features) if family else None
        if siblings is not None and rule is not None and siblings.where not in rule.features:
            rule, siblings = siblings, rule  # the rule was never reacted to in such files; its siblings were
        candidates: list[Entry | None] = [index.get(("exact", tool, key, path, normal(finding.review))),
                                          _widest(index.get(("path", tool, key, f)) for f in features), rule,
                                          siblings, index.get(("family", tool, family)) if family else None]
        for entry in candidates:
            if entry is None:
                continue
            if entry.active:
                return entry
            if entry.blocking:
                return None
        return None


def _widest(entries) -> Entry | None:
    found = [e for e in entries if e is not None and (e.active or e.blocking)]
    return max(found, key=lambda e: (e.comments, e.where), default=None)


# --- features of a finding ------------------------------------------------------------------------------------


def tool_of(source: str) -> str:
    """The analyser behind a reviewer name, as Finding.tool: "ruff", a SARIF driver, or "" (LLM, local)."""
    if source.startswith("sarif:"):
        return source.split(":", 1)[1]
    return source if source == "ruff" else ""


def rule_from_review(source: str, review: str) -> str:
    """A ruff rule id from the review text ("S101 Use of ..."), for comments remembered before rule ids were
    stored; "" for anything else."""
    match = _RUFF_CODE.match(review.strip()) if source == "ruff" else None
    return match.group(1) if match else ""


def normal(text: str) -> str:
    return " ".join(text.lower().split())


def template(text: str) -> str:
    """A review text with what varies between findings of one kind masked: quoted names, numbers, paths."""
    out = re.sub(r"`[^`]*`|'[^'\n]*'|\"[^\"\n]*\"", "_", normal(text))
    out = re.sub(r"[0-9]+", "0", out)
    return hashlib.sha256(out.encode()).hexdigest()[:12]


def finding_key(source: str, rule: str | None, review: str) -> tuple[str, str]:
    """(tool, key): the rule for an analyser's finding, the masked text for a finding without one."""
    tool = tool_of(source)
    rule = rule or rule_from_review(source, review)
    if tool and rule:
        return tool, rule
    return tool, f"text:{source}:{template(review)}"


def family_of(rule: str) -> str | None:
    """A rule's family: its letters and first digit (D100 → D1, PLR0913 → PLR0, S608 → S6)."""
    match = _FAMILY.match(rule)
    return match.group(1) if match and not rule.startswith("text:") else None


@lru_cache(maxsize=65536)
def path_features(path: str) -> tuple[str, ...]:
    """What a path pattern in a team's configuration can name: each directory, the file name, name patterns."""
    parts = tuple(p for p in path.split("/") if p and p != ".")
    if not parts:
        return ()
    name = parts[-1]
    stem, dot, suffix = name.partition(".")
    features = [f"dir:{d}" for d in dict.fromkeys(parts[:-1])] + [f"file:{name}"]
    head, _, rest = stem.partition("_")
    if head and rest:
        features.append(f"glob:{head}_*{dot}{suffix}")  # test_*.py
    rest, _, tail = stem.rpartition("_")
    if rest.strip("_") and tail:
        features.append(f"glob:*_{tail}{dot}{suffix}")  # *_test.py
    return tuple(features)


def show_feature(feature: str) -> str:
    kind, _, value = feature.partition(":")
    return f"{value}/" if kind == "dir" else value


def is_security(finding: Finding) -> bool:
    """A finding that memory must not push below major on one maintainer's word: ruff's bandit rules (S…),
    bandit itself, a vendor ``security`` level, or SARIF ``security-severity`` of 7 or more."""
    tool, level = finding.tool.lower(), (finding.level or "").lower()
    if tool == "ruff" and re.fullmatch(r"S[0-9]{3}", finding.rule_id or ""):
        return True
    if tool == "bandit" or level == "security":
        return True
    match = re.fullmatch(r"security-severity ([0-9.]+)", level)
    try:
        return bool(match) and float(match.group(1)) >= 7.0  # type: ignore[union-attr]
    except ValueError:
        return False


# --- learning (bot.memory_learn) -------------------------------------------------------------------------------


def learn(reactions: list[Reaction], threshold: Severity, revoked: frozenset[str] = frozenset(),
          remembered: tuple[tuple[str, str, str, str], ...] = ()) -> Memory:
    """Entries from trusted reactions (what generalises and how far: bot.memory_learn). ``remembered``: (source, rule,
    review, path) of every remembered comment, reacted to or not, which shows the path names that recur in the tree."""
    from bot.memory_learn import Learner

    return Memory(Learner(reactions, threshold, revoked, remembered))


def index_key(e: Entry) -> tuple[str, ...]:
    if e.kind == "exact":
        return ("exact", e.tool, e.key, e.where, e.text)
    if e.kind in ("path", "family-path"):
        return (e.kind, e.tool, e.key, e.where)
    return (e.kind, e.tool, e.key)


# --- applying -------------------------------------------------------------------------------------------------


def shift(probabilities: dict[str, float], direction: int, target: str, strength: float) -> dict[str, float]:
    """The combination rule: ``p'(l) ∝ p(l) · exp(−strength · steps(l))``, ``steps`` = levels on the wrong side of
    ``target`` (above it for 👎, below it for 👍)."""
    t = _RANK[target]
    logs = {}
    for label in LABELS:
        r = _RANK[label]
        steps = max(0, r - t) if direction < 0 else max(0, t - r)
        logs[label] = math.log(max(probabilities.get(label, 0.0), 1e-12)) - strength * steps
    top = max(logs.values())
    weights = {label: math.exp(value - top) for label, value in logs.items()}
    total = math.fsum(weights.values())
    return {label: weights[label] / total for label in LABELS}


def guarded(entry: Entry, finding: Finding) -> bool:
    """Does the security guard hold for this entry and finding? A 👎 entry on a security finding, unless two
    maintainers agree on it at rule level or narrower."""
    narrow = not entry.kind.startswith("family") and entry.agree >= 2
    return entry.direction < 0 and not narrow and is_security(finding)


def _below_major(before: dict[str, float], after: dict[str, float]) -> bool:
    """Did the level or the mass at major and above fall below major (where it was not already)?"""
    mass_before = mass_at_least(before, Severity.MAJOR)
    return argmax_label(after) < Severity.MAJOR or mass_at_least(after, Severity.MAJOR) < min(mass_before, 0.5)


def note_text(entry: Entry, before: str, after: str, guarded: bool) -> str:
    """``rated trivial, not major: 2 maintainers 👎'd ruff S101 in tests/``."""
    verb = "👍'd" if entry.direction > 0 else "👎'd"
    scope = entry.scope_text()
    if entry.corrected == entry.agree:
        said = f"corrected {scope} to {entry.target}"
    else:
        said = f"{verb} or corrected {scope}" if entry.corrected else f"{verb} {scope}"
    who = f"{entry.agree} maintainer{'s' if entry.agree != 1 else ''}"
    head = f"rated {after}, not {before}" if after != before else f"still {after}"
    text = f"{head}: {who} {said}"
    if entry.against:
        text += f" ({entry.against} disagreed)"
    if guarded:
        text += "; a security finding is not lowered below major unless two maintainers agree on its rule"
    return text


def adjust_one(finding: Finding, rating: Rating, memory: Memory) -> Rating:
    """One rating after memory (the same object when no entry applies)."""
    entry = memory.lookup(finding)
    if entry is None:
        return rating
    guard = guarded(entry, finding)
    target = max(entry.target, "major", key=_RANK.__getitem__) if guard else entry.target
    strength = BETA * min(MAX_NET, entry.agree - entry.against)
    probabilities = shift(rating.probabilities, entry.direction, target, strength)
    if guard and _below_major(rating.probabilities, probabilities):
        probabilities = dict(rating.probabilities)  # a security finding is not lowered below major this way
    after = argmax_label(probabilities).label
    note = MemoryNote(entry=entry.id, scope=entry.scope_text(), direction=entry.direction, target=target,
                      voters=entry.agree, against=entry.against, before=rating.severity,
                      before_probabilities=dict(rating.probabilities),
                      text=note_text(entry, rating.severity, after, guard), moved=after != rating.severity)
    return replace(rating, probabilities=probabilities, severity=after, memory_note=note)


def adjust(findings: list[Finding], ratings: list[Rating], memory: Memory) -> list[Rating]:
    """Every rating after memory, in order; ratings beyond the findings (none in practice) are kept as they are."""
    return [adjust_one(f, r, memory) for f, r in zip(findings, ratings)] + list(ratings[len(findings):])
