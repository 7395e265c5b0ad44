"""PURE team memory: trusted reactions and corrections adjust the ratings of findings *like* the ones reacted to.

Retraining makes a team's judgement part of the student, but it takes an hour and a review; memory applies the
same feedback on the very next review. It is deliberately small and inspectable: every adjustment comes from one
*entry* (a scope plus the maintainers who spoke about it), shows up in the comment and the JSON output, and can be
revoked (``sieve feedback memory revoke ID``).

What "like" means (most specific first; the first entry that applies wins, none are mixed):

1. ``exact``   — the same tool, rule, file and review text (what the reaction was on, wherever its line moved);
2. ``path``    — the same tool and rule in files sharing a path feature (a directory such as ``tests/``, a file
   name such as ``__init__.py``, a name pattern such as ``test_*.py``), learned only where that feature separates
   the rule's 👍 from its 👎 (``S101`` 👎 in ``tests/`` but 👍 elsewhere);
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

    p'(l) ∝ p(l) · exp(−λ · steps(l, t)),   λ = β(kind) · (agreeing − disagreeing voters)

where ``steps`` counts severity levels on the wrong side of ``t`` (0 on the right side), β is 5 for exact, path
and rule entries and 2.5 for family entries. Votes are per distinct trusted maintainer (one voter's several
reactions in a scope count once, by their own majority), so strength grows with how many maintainers agree and
shrinks with disagreement, and a maintainer's occasional mistaken reaction is outvoted by their others.

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
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from bot.findings import Finding, MemoryNote, Rating
from bot.severity import LABELS, Severity, argmax_label, mass_at_least

#: strength per net agreeing maintainer, by entry kind (see the module docstring)
BETA = {"exact": 5.0, "path": 5.0, "rule": 5.0, "family-path": 2.5, "family": 2.5}
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
    """Entries by scope key, ready for look-ups (building it is the only costly step: once per review)."""

    entries: list[Entry] = field(default_factory=list)
    index: dict[tuple[str, ...], Entry] = field(default_factory=dict)

    def lookup(self, finding: Finding) -> Entry | None:
        """The first entry that applies to ``finding`` in the order of specificity, or None."""
        tool, key = finding_key(finding.source, finding.rule_id, finding.review)
        path = finding.anchor.path
        features = path_features(path)
        candidates: list[Entry | None] = [self.index.get(("exact", tool, key, path, normal(finding.review)))]
        candidates.append(_widest(self.index.get(("path", tool, key, f)) for f in features))
        candidates.append(self.index.get(("rule", tool, key)))
        family = family_of(key) if tool else None
        if family:
            candidates.append(_widest(self.index.get(("family-path", tool, family, f)) for f in features))
            candidates.append(self.index.get(("family", tool, family)))
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


def path_features(path: str) -> tuple[str, ...]:
    """What a path pattern in a team's configuration can name: each directory, the file name, name patterns."""
    parts = PurePosixPath(path).parts
    if not parts:
        return ()
    name = parts[-1]
    stem, dot, suffix = name.partition(".")
    features = [f"dir:{d}" for d in dict.fromkeys(parts[:-1])] + [f"file:{name}"]
    if "_" in stem.strip("_"):
        head, _, _ = stem.partition("_")
        _, _, tail = stem.rpartition("_")
        features += [f"glob:{head}_*{dot}{suffix}", f"glob:*_{tail}{dot}{suffix}"]
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


# --- learning -------------------------------------------------------------------------------------------------


def below(threshold: Severity) -> str:
    """The level just below the posting threshold (trivial when the threshold is trivial)."""
    return _BY_RANK[max(0, int(threshold) - 1)]


def stance(r: Reaction, threshold: Severity) -> Stance | None:
    """One reaction as a direction and a level: a correction names the level (from the side it moves the comment);
    a 👍 asks for at least the posted level; a 👎 for at most the level below the threshold (or the posted one)."""
    posted = r.posted if r.posted in _RANK else "minor"
    if r.correction in _RANK:
        up = _RANK[r.correction] >= _RANK[posted]
        return Stance(r.user, 1 if up else -1, r.correction, True)
    if r.vote > 0:
        return Stance(r.user, 1, posted)
    if r.vote < 0:
        return Stance(r.user, -1, _BY_RANK[max(0, min(_RANK[posted] - 1, _RANK[below(threshold)]))])
    return None


def _median(levels: list[str], direction: int) -> str:
    """The middle level; between two, the one nearer to no change (lower for 👍, higher for 👎)."""
    ranks = sorted(_RANK[level] for level in levels)
    mid = len(ranks) // 2
    pick = ranks[mid] if len(ranks) % 2 or direction < 0 else ranks[mid - 1]
    return _BY_RANK[pick]


def _per_user(stances: list[Stance]) -> dict[str, Stance]:
    """One stance per maintainer: the direction of the majority of their stances (ties drop them), its median level."""
    by_user: dict[str, list[Stance]] = defaultdict(list)
    for s in stances:
        by_user[s.user].append(s)
    out = {}
    for user, mine in by_user.items():
        net = sum(s.direction for s in mine)
        if net == 0:
            continue
        direction = 1 if net > 0 else -1
        same = [s for s in mine if s.direction == direction]
        out[user] = Stance(user, direction, _median([s.level for s in same], direction), any(s.corrected for s in same))
    return out


def make_entry(kind: str, tool: str, key: str, where: str, text: str, stances: list[Stance], comments: int,
               revoked: frozenset[str] = frozenset(), rules: tuple[str, ...] = ()) -> Entry:
    users = _per_user(stances)
    ups = [s for s in users.values() if s.direction > 0]
    downs = [s for s in users.values() if s.direction < 0]
    direction = 1 if len(ups) > len(downs) else -1 if len(downs) > len(ups) else 0
    majority = ups if direction > 0 else downs if direction < 0 else []
    target = _median([s.level for s in majority], direction) if majority else ""
    entry_id = hashlib.sha256("\x1f".join((kind, tool, key, where, text, str(direction))).encode()).hexdigest()[:10]
    return Entry(entry_id, kind, tool, key, where, text, direction, target, len(majority),
                 len(users) - len(majority), comments, tuple(users[u] for u in sorted(users)), rules,
                 sum(s.corrected for s in majority), entry_id in revoked)


@dataclass(frozen=True)
class _Comment:
    key: str
    path: str
    features: frozenset[str]
    stances: tuple[Stance, ...]

    @property
    def direction(self) -> int:
        net = sum(s.direction for s in self.stances)
        return (net > 0) - (net < 0)


def _best_split(comments: list[_Comment]) -> tuple[str, list[_Comment]] | None:
    """The path feature that best separates a rule's 👍 comments from its 👎 ones, if any does better than none."""
    counts = Counter(c.direction for c in comments if c.direction)
    if len(counts) < 2:
        return None
    best, best_score = None, max(counts.values())
    for feature in sorted(set().union(*(c.features for c in comments))):
        inside = [c for c in comments if feature in c.features]
        if len(inside) == len(comments):
            continue
        within = Counter(c.direction for c in inside if c.direction)
        if not within:
            continue
        side = max(within, key=lambda d: (within[d], d))
        if within[side] < 0.75 * sum(within.values()):
            continue
        outside = Counter(c.direction for c in comments if feature not in c.features and c.direction)
        score = within[side] + outside[-side]
        kind_order = {"dir": 0, "glob": 1, "file": 2}[feature.split(":", 1)[0]]
        rank = (score, len(inside), -kind_order)
        if score > best_score and (best is None or rank > best[0]):
            best = (rank, feature, inside)
    return (best[1], best[2]) if best else None


def _rule_entries(tool: str, key: str, comments: list[_Comment], revoked: frozenset[str]) -> list[Entry]:
    """Path entries where a path feature separates the rule's reactions, then one entry for the rest."""
    out, rest = [], list(comments)
    for _ in range(4):
        split = _best_split(rest)
        if split is None:
            break
        feature, inside = split
        out.append(make_entry("path", tool, key, feature, "", [s for c in inside for s in c.stances], len(inside),
                              revoked))
        rest = [c for c in rest if c not in inside]
    if rest:
        out.append(make_entry("rule", tool, key, "", "", [s for c in rest for s in c.stances], len(rest), revoked))
    return out


def _family_entries(entries: list[Entry], revoked: frozenset[str]) -> list[Entry]:
    """Family entries from 👎 rule (and path) entries of at least two rules of a family, none of them split or 👍.

    Only 👎 generalises to a family: teams select whole families and turn off single rules by name, so that the
    siblings of rules a team wants are often ones it turned off (ruff's UP031 beside UP006), while siblings of
    rules it turned off tend to be off too (D100…D107)."""
    groups: dict[tuple[str, str, str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        family = family_of(e.key) if e.tool and e.kind in ("rule", "path") else None
        if family and (e.active or e.blocking):  # a split rule keeps its family from generalising
            groups[("family" if e.kind == "rule" else "family-path", e.tool, family, e.where)].append(e)
    out = []
    for (kind, tool, family, where), members in sorted(groups.items()):
        rules = tuple(sorted({m.key for m in members}))
        if len(rules) < 2 or {m.direction for m in members} != {-1}:
            continue
        stances = [s for m in members for s in m.voters]
        out.append(make_entry(kind, tool, family, where, "", stances, sum(m.comments for m in members), revoked,
                              rules))
    return out


def learn(reactions: list[Reaction], threshold: Severity, revoked: frozenset[str] = frozenset()) -> Memory:
    """Entries from trusted reactions (see the module docstring for what generalises and how far)."""
    by_comment: dict[str, list[Reaction]] = defaultdict(list)
    for r in reactions:
        by_comment[r.comment].append(r)
    groups: dict[tuple[str, str], list[_Comment]] = defaultdict(list)
    exact: dict[tuple[str, str, str, str], list[_Comment]] = defaultdict(list)
    for key in sorted(by_comment):
        rows = by_comment[key]
        first = rows[0]
        stances = tuple(s for s in (stance(r, threshold) for r in rows) if s is not None)
        if not stances:
            continue
        tool, rule = finding_key(first.source, first.rule, first.review)
        comment = _Comment(key, first.path, frozenset(path_features(first.path)), stances)
        groups[(tool, rule)].append(comment)
        exact[(tool, rule, first.path, normal(first.review))].append(comment)
    entries: list[Entry] = []
    for (tool, rule, path, text), comments in sorted(exact.items()):
        entries.append(make_entry("exact", tool, rule, path, text, [s for c in comments for s in c.stances],
                                  len(comments), revoked))
    for (tool, rule), comments in sorted(groups.items()):
        entries.extend(_rule_entries(tool, rule, comments, revoked))
    entries.extend(_family_entries(entries, revoked))
    index = {_index_key(e): e for e in entries}
    return Memory(entries, index)


def _index_key(e: Entry) -> tuple[str, ...]:
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
    strength = BETA[entry.kind] * min(MAX_NET, entry.agree - entry.against)
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
