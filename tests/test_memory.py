"""Team memory (pure): what generalises from trusted reactions, the one combination rule, and the poisoning guards."""

from __future__ import annotations

import math
import random

import pytest

from bot import memory
from bot.findings import Anchor, Finding, Rating
from bot.severity import Severity

MAJOR = {"critical": 0.1, "major": 0.7, "minor": 0.15, "trivial": 0.05}
LOW = {"critical": 0.01, "major": 0.04, "minor": 0.15, "trivial": 0.8}


def react(comment: str, user: str, vote: int, *, rule: str = "S101", path: str = "tests/test_a.py",
          posted: str = "major", correction: str | None = None, source: str = "ruff", review: str = "") -> memory.Reaction:
    return memory.Reaction(comment, "org/app", source, rule, path, review or f"{rule} message", posted, user, vote,
                           correction)


def team(rule: str, paths: list[str], vote: int, users=("ann", "bob"), **kw) -> list[memory.Reaction]:
    """Each of ``users`` reacts ``vote`` on one comment per path."""
    return [react(f"{rule}-{path}", user, vote, rule=rule, path=path, **kw) for path in paths for user in users]


def finding(rule: str = "S101", path: str = "src/app/core.py", source: str = "ruff", review: str = "",
            level: str | None = None) -> Finding:
    return Finding(Anchor(path, 3), review or f"{rule} message", source, rule_id=rule if source == "ruff" else None,
                   level=level)


def rated(f: Finding, m: memory.Memory, probs=MAJOR) -> Rating:
    severity = max(probs, key=probs.get)
    return memory.adjust_one(f, Rating(dict(probs), severity, "student", "p"), m)


def test_the_combination_rule_is_one_log_linear_shift():
    out = memory.shift(MAJOR, -1, "trivial", 2.5)
    raw = {k: MAJOR[k] * math.exp(-2.5 * steps) for k, steps in
           (("critical", 3), ("major", 2), ("minor", 1), ("trivial", 0))}
    assert out == pytest.approx({k: v / sum(raw.values()) for k, v in raw.items()})
    up = memory.shift(LOW, 1, "minor", 5.0)  # 👍: at least minor — levels above it are not penalised
    assert up["critical"] / up["major"] == pytest.approx(LOW["critical"] / LOW["major"])
    assert up["trivial"] < 0.1 < up["minor"]


def test_strength_grows_with_maintainers_and_shrinks_with_disagreement():
    paths = [f"src/m{i}.py" for i in range(3)]
    two = memory.learn(team("B006", paths, -1), Severity.MINOR)
    three = memory.learn(team("B006", paths, -1, users=("ann", "bob", "cy")), Severity.MINOR)
    split = memory.learn(team("B006", paths, -1, users=("ann", "bob", "cy")) + team("B006", paths, 1, users=("dee",)),
                         Severity.MINOR)
    f = finding("B006", "lib/other.py")
    p_two, p_three, p_split = (rated(f, m).probabilities["trivial"] for m in (two, three, split))
    assert p_two < p_three and p_split < p_three  # 3 for, 1 against counts as 2 for
    assert p_split == pytest.approx(p_two)
    tie = memory.learn(team("B006", paths, -1, users=("ann",)) + team("B006", paths, 1, users=("bob",)),
                       Severity.MINOR)
    assert rated(f, tie).memory_note is None  # as many for as against: no change


def test_a_rule_learned_in_tests_only_where_the_reactions_separate():
    reactions = team("S101", [f"tests/test_{i}.py" for i in range(4)], -1) + team("S101", ["src/a.py", "src/b.py"], 1)
    m = memory.learn(reactions, Severity.MINOR)
    in_tests = rated(finding("S101", "pkg/tests/test_new.py"), m)
    elsewhere = rated(finding("S101", "pkg/lib/new.py"), m)
    assert in_tests.severity == "trivial" and elsewhere.severity == "major"
    assert in_tests.memory_note.text == "rated trivial, not major: 2 maintainers 👎'd ruff S101 in tests/"
    assert in_tests.memory_note.moved and not elsewhere.memory_note.moved


def test_a_rule_turned_down_only_in_test_folders_stays_posted_elsewhere():
    paths = ["pkg/a/tests/test_x.py", "pkg/b/tests/test_y.py", "lib/tests/test_z.py"]
    m = memory.learn(team("S307", paths, -1), Severity.MINOR)
    assert rated(finding("S307", "other/tests/test_new.py"), m).severity == "trivial"
    assert rated(finding("S307", "other/core.py"), m).memory_note is None  # no evidence outside tests/


def test_a_mistaken_thumbs_down_outside_a_liked_folder_does_not_silence_the_rule_elsewhere():
    liked = ["networkx/a/x.py", "networkx/b/y.py", "networkx/c/z.py", "networkx/d/tests/test_w.py"]
    m = memory.learn(team("F821", liked, 1) + team("F821", ["mpmath/ctx.py"], -1), Severity.MINOR)
    out = rated(finding("F821", "mpmath/libmp/backend.py"), m)
    assert out.severity == "major"  # the 👍 of four comments is the rule's; the lone 👎 is that comment's
    assert rated(finding("F821", "mpmath/ctx.py"), m).severity == "trivial"  # where it was said, it holds
    assert not [e for e in m.entries if e.kind == "path" and e.direction > 0]  # no folder carved out for a 👍


def test_siblings_turned_down_in_tests_outweigh_a_rule_liked_only_elsewhere():
    tests = ["pkg/a/tests/test_x.py", "pkg/b/tests/test_y.py"]
    m = memory.learn(team("B015", tests, -1) + team("B017", tests, -1) + team("B018", ["pkg/a/core.py",
                                                                                   "pkg/b/core.py"], 1),
                     Severity.MINOR)
    assert rated(finding("B018", "pkg/c/tests/test_w.py"), m).severity == "trivial"  # B0* in tests/
    assert rated(finding("B018", "pkg/c/util.py"), m, LOW).severity == "major"  # the 👍 (posted at major) there


def test_a_correction_names_the_level_and_a_bare_thumbs_down_goes_below_the_threshold():
    fixed = memory.learn(team("E711", ["a.py", "b.py"], -1, correction="minor"), Severity.MINOR)
    assert rated(finding("E711", "c.py"), fixed).severity == "minor"
    bare = memory.learn(team("E711", ["a.py", "b.py"], -1), Severity.MAJOR)  # threshold major: below it is minor
    assert bare.entries[-1].target == "minor" and rated(finding("E711", "c.py"), bare).severity == "minor"


def test_a_thumbs_up_keeps_a_rule_posted():
    m = memory.learn(team("B904", ["a.py", "b.py"], 1, posted="minor"), Severity.MINOR)
    out = rated(finding("B904", "c.py"), m, LOW)
    assert out.severity == "minor" and out.probabilities["trivial"] < 0.1


def test_a_family_generalises_to_unreacted_rules_only_when_its_rules_agree():
    agree = memory.learn(team("D100", ["a.py"], -1) + team("D103", ["b.py"], -1), Severity.MINOR)
    out = rated(finding("D102", "c.py"), agree)
    assert out.severity == "trivial" and "D1* (D100, D103)" in out.memory_note.text
    assert rated(finding("D200", "c.py"), agree).memory_note is None  # another family
    mixed = memory.learn(team("D205", ["a.py"], -1) + team("D209", ["a.py"], -1) + team("D200", ["b.py"], 1),
                         Severity.MINOR)
    assert rated(finding("D201", "c.py"), mixed).memory_note is None
    wanted = memory.learn(team("UP006", ["a.py"], 1) + team("UP035", ["b.py"], 1), Severity.MINOR)
    assert rated(finding("UP031", "c.py"), wanted, LOW).memory_note is None  # 👍 stays with its rule


def test_an_llm_finding_is_like_another_with_the_same_wording_but_other_names():
    text = "Consider renaming `tmp` to something clearer in line 12"
    m = memory.learn(team("", ["a.py", "b.py"], -1, source="llm", review=text), Severity.MINOR)
    out = rated(finding(source="llm", review="Consider renaming `x2` to something clearer in line 80"), m)
    assert out.severity == "trivial"
    assert rated(finding(source="llm", review="SQL built from user input"), m).memory_note is None


def test_a_revoked_entry_is_never_applied_again():
    m = memory.learn(team("B006", ["a.py", "b.py"], -1), Severity.MINOR)
    rule = next(e for e in m.entries if e.kind == "rule")
    again = memory.learn(team("B006", ["a.py", "b.py"], -1), Severity.MINOR, frozenset({rule.id}))
    assert rated(finding("B006", "c.py"), again).memory_note is None
    assert next(e for e in again.entries if e.id == rule.id).revoked


# --- poisoning ------------------------------------------------------------------------------------------------


def test_one_compromised_account_with_50_reactions_silences_no_rule_and_no_security_finding():
    paths = [f"src/mod{i}.py" for i in range(25)]
    attack = (team("S608", paths, -1, users=("mallory",), correction="trivial")
              + team("B006", paths, -1, users=("mallory",)))
    assert len(attack) == 50
    m = memory.learn(attack, Severity.MINOR)
    assert not [e for e in m.entries if e.active and e.kind != "exact"]
    for rule in ("S608", "B006"):  # the same rules elsewhere: untouched, so no rule is silenced for the team
        assert rated(finding(rule, "app/views.py"), m).memory_note is None
    hit = rated(finding("S608", "src/mod3.py"), m)  # what the account voted on: a security finding stays ≥ major
    assert hit.severity == "major" and hit.probabilities["major"] + hit.probabilities["critical"] > 0.5
    assert "security finding is not lowered below major" in hit.memory_note.text
    split = {"critical": 0.5, "major": 0.1, "minor": 0.3, "trivial": 0.1}  # taking critical away would leave minor
    assert rated(finding("S608", "src/mod4.py"), m, split).probabilities == split
    plain = rated(finding("B006", "src/mod3.py"), m)  # a non-security finding it voted on may move: only that one
    assert plain.severity == "trivial"


def test_one_account_cannot_outvote_two_maintainers():
    paths = [f"tests/test_{i}.py" for i in range(5)]
    m = memory.learn(team("S101", paths, -1) + team("S101", paths, 1, users=("mallory",)), Severity.MINOR)
    out = rated(finding("S101", "pkg/tests/test_z.py"), m)
    assert out.severity == "trivial" and out.memory_note.against == 1


def test_security_below_major_needs_two_maintainers_at_rule_level():
    sec = finding("S608", "app/db.py", level="security")
    one = memory.learn(team("S608", ["a.py", "b.py", "c.py"], -1, users=("ann",)), Severity.MINOR)
    assert rated(sec, one).memory_note is None  # one maintainer: only the exact findings they voted on
    two = memory.learn(team("S608", ["a.py", "b.py"], -1), Severity.MINOR)
    assert rated(sec, two).severity == "trivial"
    family = memory.learn(team("S602", ["a.py"], -1) + team("S604", ["b.py"], -1), Severity.MINOR)
    via_family = rated(finding("S605", "app/run.py"), family)  # never reacted to: the family may not drop it
    assert via_family.severity == "major" and "security finding" in via_family.memory_note.text
    sarif = Finding(Anchor("a.c", 1), "overflow", "sarif:codeql", rule_id="cpp/overflow",
                    level="security-severity 8.1")
    assert memory.is_security(sarif) and not memory.is_security(finding("B006"))


def test_honest_mistakes_ten_percent_flipped_are_outvoted():
    rng = random.Random(19)
    reactions, truth = [], {}
    for r in range(40):
        rule, vote = f"B{100 + r}", (1 if r % 2 else -1)
        truth[rule] = vote
        for i in range(5):
            for user in ("ann", "bob"):
                flipped = -vote if rng.random() < 0.10 else vote
                reactions.append(react(f"{rule}-{i}", user, flipped, rule=rule, path=f"src/m{i}.py", posted="minor"))
    m = memory.learn(reactions, Severity.MINOR)
    rules = {e.key: e for e in m.entries if e.kind == "rule"}
    assert not [k for k, e in rules.items() if e.active and e.direction != truth[k]]  # never the wrong way
    assert sum(e.active and e.direction == truth[k] for k, e in rules.items()) >= 36
