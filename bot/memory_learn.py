"""PURE: trusted reactions → team-memory entries (bot.memory applies them). What generalises, and how far.

Reactions are grouped by rule (tool + rule id; the masked review text for findings without a tool). Each
maintainer's reactions in a scope count once, by their own majority, so a mistaken reaction is outvoted by the
same maintainer's others. Within a rule:

- a path feature (a folder name, a file name, a file-name pattern) that separates the rule's 👍 comments from its
  👎 ones makes a ``path`` entry for the comments it covers, and the rest make the ``rule`` entry; between equally
  good features, one whose files were turned down wins (path exceptions in linters turn rules off), then the one
  that recurs in most places of the tree (``tests/``, ``__init__.py``: kinds of path, not places);
- a rule turned down only in files that share a recurring feature is turned down there only (👎 on ``S101`` in
  ``tests/`` does not reach ``src/``); a rule turned down in files with nothing recurring in common, everywhere;
- ``family`` (and ``family-path``) entries come from 👎 rule (path) entries of at least two rules of a family with
  none of its rules split or 👍.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from bot.memory import (
    Entry,
    Reaction,
    Stance,
    family_of,
    finding_key,
    normal,
    path_features,
)
from bot.severity import Severity

_RANK = {"trivial": 0, "minor": 1, "major": 2, "critical": 3}
_BY_RANK = {rank: label for label, rank in _RANK.items()}


# --- learning -------------------------------------------------------------------------------------------------


def below(threshold: Severity) -> str:
    """The level just below the posting threshold (trivial when the threshold is trivial)."""
    return _BY_RANK[max(0, int(threshold) - 1)]


def rejection_target(posted: str, threshold: Severity) -> str:
    """The level a bare 👎 asks for *at most*: the one below the posting threshold, or below the posted level when
    that is lower (never below trivial). Memory and retraining read a 👎 the same way."""
    posted = posted if posted in _RANK else "minor"
    return _BY_RANK[max(0, min(_RANK[posted] - 1, _RANK[below(threshold)]))]


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
        return Stance(r.user, -1, rejection_target(posted, threshold))
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
               revoked: frozenset[str] = frozenset(), rules: tuple[str, ...] = (),
               features: frozenset[str] = frozenset()) -> Entry:
    users = _per_user(stances)
    ups = [s for s in users.values() if s.direction > 0]
    downs = [s for s in users.values() if s.direction < 0]
    direction = 1 if len(ups) > len(downs) else -1 if len(downs) > len(ups) else 0
    majority = ups if direction > 0 else downs if direction < 0 else []
    target = _median([s.level for s in majority], direction) if majority else ""
    entry_id = hashlib.sha256("\x1f".join((kind, tool, key, where, text, str(direction))).encode()).hexdigest()[:10]
    return Entry(entry_id, kind, tool, key, where, text, direction, target, len(majority),
                 len(users) - len(majority), comments, tuple(users[u] for u in sorted(users)), features, rules,
                 sum(s.corrected for s in majority), entry_id in revoked)


@dataclass(frozen=True)
class _Comment:
    """A remembered comment with trusted feedback: its path features, stances, and their net direction."""

    key: str
    path: str
    features: frozenset[str]
    stances: tuple[Stance, ...]
    direction: int  # +1, -1, or 0 when its maintainers are split


def spread(paths: set[str]) -> dict[str, int]:
    """In how many different places each path feature occurs (the folder above it): a name that recurs across the
    tree (``tests/``, ``__init__.py``) is a kind of path and generalises; one found in a single place is a place."""
    places: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        parts = [p for p in path.split("/") if p and p != "."]
        for depth, name in enumerate(parts[:-1]):
            places[f"dir:{name}"].add("/".join(parts[:depth]))
        for feature in path_features(path):
            if not feature.startswith("dir:"):
                places[feature].add("/".join(parts[:-1]))
    return {feature: len(where) for feature, where in places.items()}


def _best_split(comments: list[_Comment], spread: dict[str, int]) -> tuple[str, list[_Comment]] | None:
    """The path feature that best separates a rule's 👍 comments from its 👎 ones, if any does better than none.
    Only a feature whose comments were turned down is carved out (path exceptions in linters turn rules off, not
    on): a feature holding the 👍 would leave the few 👎 outside it to speak for the rule everywhere else, so one
    mistaken 👎 outside ``networkx/`` would silence the rule in every other folder. Between features that separate
    equally well: the one that recurs in most places of the tree."""
    counts = Counter(c.direction for c in comments if c.direction)
    if len(counts) < 2:
        return None
    best, best_score = None, max(counts.values())
    for feature in sorted(set().union(*(c.features for c in comments))):
        inside = [c for c in comments if feature in c.features]
        recurring_folder = feature.startswith("dir:") and spread.get(feature, 0) >= 2
        if len(inside) == len(comments) or (len(inside) < 2 and not recurring_folder):
            continue  # a path exception needs two comments behind it, or one in a folder name that recurs
        within = Counter(c.direction for c in inside if c.direction)
        if not within:
            continue
        side = max(within, key=lambda d: (within[d], d))
        if side > 0 or within[side] < 0.75 * sum(within.values()):
            continue
        outside = Counter(c.direction for c in comments if feature not in c.features and c.direction)
        score = within[side] + outside[-side]
        kind_order = {"dir": 0, "glob": 1, "file": 2}[feature.split(":", 1)[0]]
        rank = (score, spread.get(feature, 0), len(inside), -kind_order)
        if score > best_score and (best is None or rank > best[0]):
            best = (rank, feature, inside)
    return (best[1], best[2]) if best else None


def _scope_down(comments: list[_Comment], places: dict[str, int]) -> str | None:
    """For a rule its maintainers turn down: the recurring path feature that every comment turned down shares
    (``tests/``), so that the 👎 reaches as far as the evidence and no further; None: the rule everywhere."""
    down = [c for c in comments if c.direction < 0]
    if not down:
        return None
    shared = frozenset.intersection(*(c.features for c in down))
    outside = [f for f in shared if places.get(f, 0) >= 2]
    kind_order = {"dir": 0, "glob": 1, "file": 2}
    return max(outside, key=lambda f: (places[f], -kind_order[f.split(":", 1)[0]], f), default=None)


Spoken = tuple[Entry, frozenset[str]]  # an entry and the family scopes it speaks for ("" = the whole family)


def _rule_entries(tool: str, key: str, comments: list[_Comment], revoked: frozenset[str],
                  places: dict[str, int]) -> list[Spoken]:
    """Path entries where a path feature separates the rule's reactions, then one entry for the rest (scoped to a
    path feature when the rule was turned down only there, see ``_scope_down``); each with the family scopes it
    speaks for: its path feature; or for the rule entry the whole family and, if 👎, every recurring feature all its
    comments share, if 👍 or split every feature of a comment its maintainers agreed on."""
    out, rest = [], list(comments)
    for _ in range(4):
        split = _best_split(rest, places)
        if split is None:
            break
        feature, inside = split
        out.append((make_entry("path", tool, key, feature, "", [s for c in inside for s in c.stances], len(inside),
                               revoked), frozenset({feature})))
        rest = [c for c in rest if c not in inside]
    if rest:
        stances = [s for c in rest for s in c.stances]
        overall = make_entry("rule", tool, key, "", "", stances, len(rest), revoked)
        scope = _scope_down(rest, places) if overall.direction < 0 else None
        every = frozenset().union(*(c.features for c in rest if c.direction))  # where its maintainers agreed
        if scope:
            out.append((make_entry("path", tool, key, scope, "", stances, len(rest), revoked), frozenset({scope})))
        else:
            entry = make_entry("rule", tool, key, "", "", stances, len(rest), revoked, features=every)
            shared = frozenset.intersection(*(c.features for c in rest))
            speaks = {f for f in shared if places.get(f, 0) >= 2} if entry.direction < 0 else every
            out.append((entry, frozenset({""} | speaks)))
    return out


def _family_entries(entries: list[Spoken], revoked: frozenset[str]) -> list[Entry]:
    """Family entries from 👎 rule (and path) entries of at least two rules of a family, none of them split or 👍.

    Only 👎 generalises to a family: teams select whole families and turn off single rules by name, so that the
    siblings of rules a team wants are often ones it turned off (ruff's UP031 beside UP006), while siblings of
    rules it turned off tend to be off too (D100…D107)."""
    groups: dict[tuple[str, str, str, str], list[Entry]] = defaultdict(list)
    for e, scopes in entries:
        family = family_of(e.key) if e.tool else None
        if family and (e.active or e.blocking):  # a split rule keeps its family from generalising
            for where in scopes:
                groups[("family-path" if where else "family", e.tool, family, where)].append(e)
    out = []
    for (kind, tool, family, where), members in sorted(groups.items()):
        rules = tuple(sorted({m.key for m in members}))
        if len(rules) < 2 or {m.direction for m in members} != {-1}:
            continue
        stances = [s for m in members for s in m.voters]
        out.append(make_entry(kind, tool, family, where, "", stances, sum(m.comments for m in members), revoked,
                              rules))
    return out


class Learner:
    """Learns the entries of a rule, or of a family, the first time a look-up needs them: a review with a few
    rules among 10,000 remembered reactions learns only those (``everything`` learns all, for the listing)."""

    def __init__(self, reactions: list[Reaction], threshold: Severity, revoked: frozenset[str],
                 remembered: tuple[tuple[str, str, str, str], ...]) -> None:
        self.threshold, self.revoked = threshold, revoked
        self.paths = {r.path for r in reactions} | {path for *_, path in remembered}
        self.by_rule: dict[tuple[str, str], dict[str, list[Reaction]]] = defaultdict(lambda: defaultdict(list))
        for r in reactions:
            self.by_rule[finding_key(r.source, r.rule, r.review)][r.comment].append(r)
        self.families: dict[tuple[str, str], list[str]] = defaultdict(list)
        for tool, rule in self.by_rule:
            family = family_of(rule) if tool else None
            if family:
                self.families[(tool, family)].append(rule)
        self._places: dict[str, int] | None = None
        self._rules: dict[tuple[str, str], tuple[list[Entry], list[Spoken]]] = {}
        self._family: dict[tuple[str, str], list[Entry]] = {}

    @property
    def places(self) -> dict[str, int]:
        if self._places is None:
            self._places = spread(self.paths)
        return self._places

    def rule(self, tool: str, key: str) -> tuple[list[Entry], list[Spoken]]:
        """The exact entries of a rule's findings, and its path and rule entries with the scopes they speak for."""
        if (tool, key) not in self._rules:
            exact: dict[tuple[str, str], list[_Comment]] = defaultdict(list)
            comments = []
            for comment_key, rows in sorted(self.by_rule.get((tool, key), {}).items()):
                stances = tuple(s for s in (stance(r, self.threshold) for r in rows) if s is not None)
                if stances:
                    net = sum(s.direction for s in stances)
                    c = _Comment(comment_key, rows[0].path, frozenset(path_features(rows[0].path)), stances,
                                 (net > 0) - (net < 0))
                    comments.append(c)
                    exact[(rows[0].path, normal(rows[0].review))].append(c)
            found = [make_entry("exact", tool, key, path, text, [s for c in group for s in c.stances], len(group),
                                self.revoked) for (path, text), group in sorted(exact.items())]
            spoken = _rule_entries(tool, key, comments, self.revoked, self.places) if comments else []
            self._rules[(tool, key)] = (found, spoken)
        return self._rules[(tool, key)]

    def family(self, tool: str, family: str) -> list[Entry]:
        if (tool, family) not in self._family:
            spoken = [s for rule in sorted(self.families.get((tool, family), ())) for s in self.rule(tool, rule)[1]]
            self._family[(tool, family)] = _family_entries(spoken, self.revoked)
        return self._family[(tool, family)]

    def entries_for(self, tool: str, key: str, family: str | None) -> list[Entry]:
        """Every entry a finding of this rule could use."""
        exact, spoken = self.rule(tool, key)
        return exact + [e for e, _ in spoken] + (self.family(tool, family) if family else [])

    def everything(self) -> list[Entry]:
        out = []
        for tool, key in sorted(self.by_rule):
            exact, spoken = self.rule(tool, key)
            out += exact + [e for e, _ in spoken]
        for tool, family in sorted(self.families):
            out += self.family(tool, family)
        return out
