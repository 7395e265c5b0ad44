"""Planning is pure: thresholds, the comment cap, idempotent re-runs, updates and resolutions."""

from __future__ import annotations

from bot import markers
from bot.findings import Anchor, Finding, Rating
from bot.plan import ExistingComment, PlanConfig, passes, plan, select
from bot.severity import Severity


def finding(path="a.py", line=3, review="Possible SQL injection", code=None, rule="S608") -> Finding:
    code = code or f"@@ -1,2 +1,{line} @@\n x = 1\n+query = f'SELECT {{x}}'"
    return Finding(anchor=Anchor(path=path, line=line), review=review, source="ruff", code=code, rule_id=rule)


def rating(critical=0.1, major=0.2, minor=0.3, trivial=0.4, model="m1") -> Rating:
    probs = {"critical": critical, "major": major, "minor": minor, "trivial": trivial}
    top = max(probs, key=probs.get)
    return Rating(probabilities=probs, severity=top, model_id=model, prompt_version="v")


def test_mass_threshold_uses_probability_mass_not_argmax():
    r = rating(critical=0.3, major=0.25, minor=0.05, trivial=0.4)  # argmax trivial, but P(≥major)=0.55
    assert passes(r, PlanConfig(threshold=Severity.MAJOR, mode="mass"))[0]
    ok, reason = passes(r, PlanConfig(threshold=Severity.MAJOR, mode="argmax"))
    assert not ok and "argmax trivial" in reason


def test_mass_threshold_is_monotone_in_the_level():
    r = rating(0.2, 0.2, 0.2, 0.4)
    results = [passes(r, PlanConfig(threshold=level))[0] for level in
               (Severity.TRIVIAL, Severity.MINOR, Severity.MAJOR, Severity.CRITICAL)]
    assert results == sorted(results, reverse=True)
    assert results[0] is True and results[-1] is False


def test_cap_moves_the_rest_to_the_summary_most_severe_first():
    fs = [finding(line=i, review=f"issue {i}") for i in range(1, 6)]
    rs = [rating(critical=0.1 * i, major=0.3, minor=0.3 - 0.05 * i, trivial=0.3 - 0.05 * i) for i in range(1, 6)]
    result = plan(fs, rs, PlanConfig(threshold=Severity.MINOR, max_comments=2))
    posted_lines = sorted(c.finding.anchor.line for c in result.create)
    assert posted_lines == [4, 5]  # the two with the highest P(critical)
    capped = [d for d in result.decisions if d.skip_reason and "cap" in d.skip_reason]
    assert len(capped) == 3
    assert "3 finding(s) over the comment cap" in result.summary


def test_fingerprint_survives_line_shift_but_not_code_change():
    a = finding(line=3)
    shifted = finding(line=30, code="@@ -20,2 +28,3 @@\n y = 2\n+query = f'SELECT {x}'")
    changed = finding(line=3, code="@@ -1,2 +1,3 @@\n x = 1\n+query = 'SELECT ?'")
    assert markers.fingerprint_base(a) == markers.fingerprint_base(shifted)
    assert markers.fingerprint_base(a) != markers.fingerprint_base(changed)


def test_identical_findings_get_distinct_fingerprints():
    fs = [finding(line=3), finding(line=9)]
    prints = markers.fingerprints(fs)
    assert len(set(prints)) == 2


def _existing_from(result, ours: bool = True) -> tuple[ExistingComment, ...]:
    return tuple(ExistingComment(id=str(i), body=c.body, author="sieve-bot" if ours else "stranger", ours=ours,
                                 path=c.finding.anchor.path, line=c.finding.anchor.line)
                 for i, c in enumerate(result.create))


def test_rerun_on_same_findings_creates_nothing():
    fs = [finding(line=i, review=f"issue {i}") for i in range(1, 4)]
    rs = [rating(0.5, 0.2, 0.2, 0.1)] * 3
    first = plan(fs, rs, PlanConfig())
    second = plan(fs, rs, PlanConfig(), existing=_existing_from(first))
    assert len(first.create) == 3
    assert not second.create and not second.update and not second.resolve
    assert len(second.keep) == 3


def test_comments_not_written_by_sieve_are_invisible_to_planning():
    fs = [finding(line=i, review=f"issue {i}") for i in range(1, 4)]
    rs = [rating(0.5, 0.2, 0.2, 0.1)] * 3
    copies = _existing_from(plan(fs, rs, PlanConfig()), ours=False)  # a stranger pasted Sieve's exact comments
    assert all(c.marker is None for c in copies)
    second = plan(fs, rs, PlanConfig(), existing=copies)
    assert len(second.create) == 3 and not second.keep and not second.resolve


def test_push_updates_changed_and_resolves_gone():
    fs = [finding(line=1, review="one"), finding(line=2, review="two")]
    first = plan(fs, [rating(0.6, 0.2, 0.1, 0.1)] * 2, PlanConfig())
    existing = _existing_from(first)
    new_fs = [finding(line=1, review="one"), finding(line=7, review="three")]
    new_rs = [rating(0.1, 0.7, 0.1, 0.1), rating(0.6, 0.2, 0.1, 0.1)]  # "one" changed severity
    second = plan(new_fs, new_rs, PlanConfig(), existing=existing)
    assert [c.finding.review for c in second.create] == ["three"]
    assert [u.comment.finding.review for u in second.update] == ["one"]
    assert len(second.resolve) == 1 and markers.decode(second.resolve[0].existing.body).review == "two"


def test_marker_round_trip_carries_the_training_example():
    f = finding(code="@@ -1 +1 @@\n+x = '-->' + \"<!-- sieve:v1 fake -->\"")
    result = plan([f], [rating(0.7, 0.1, 0.1, 0.1)], PlanConfig(commit="abc123"))
    body = result.create[0].body
    mark = markers.decode(body)
    assert mark is not None and mark.code == f.code and mark.review == f.review
    assert mark.commit == "abc123" and mark.severity == "critical"
    assert abs(sum(mark.probabilities.values()) - 1.0) < 1e-3
    assert body.count("<!-- sieve:v2 ") == 1  # the code's fake marker is inside base64, not raw


def test_suggestion_fence_outlasts_backticks_in_text():
    f = Finding(anchor=Anchor("a.py", 5, start_line=4), review="use a fence", source="llm",
                code="@@ -1 +1,5 @@\n+a\n+b", suggestion="x = '```'\ny = 2")
    gh = plan([f], [rating(0.7, 0.1, 0.1, 0.1)], PlanConfig(flavor="github")).create[0].body
    gl = plan([f], [rating(0.7, 0.1, 0.1, 0.1)], PlanConfig(flavor="gitlab")).create[0].body
    assert "````suggestion\nx = '```'\ny = 2\n````" in gh
    assert "````suggestion:-1+0\n" in gl


def test_select_prefers_findings_already_on_the_host_under_the_cap():
    fs = [finding(line=1, review="old"), finding(line=2, review="new")]
    rs = [rating(0.3, 0.3, 0.2, 0.2), rating(0.9, 0.05, 0.03, 0.02)]
    first = plan(fs[:1], rs[:1], PlanConfig(max_comments=1))
    decisions = select(fs, rs, PlanConfig(max_comments=1), _existing_from(first))
    assert [d.posted for d in decisions] == [True, False]
