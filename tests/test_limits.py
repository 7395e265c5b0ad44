"""Bodies Sieve writes fit the hosts' limits (bot.render / bot.plan, pure; each limit comes from the host's entry):
GitHub 65,536 characters, GitLab 1,000,000."""

from __future__ import annotations

from dataclasses import replace

from bot import markers, plugins, render
from bot.findings import Anchor, Finding, Rating, Skip
from bot.plan import PlanConfig, plan
from bot.severity import Severity


def _limits(flavor: str) -> PlanConfig:
    return PlanConfig(flavor=flavor, max_body=plugins.host_entry(flavor).max_body)


def test_the_host_entries_carry_the_hosts_limits():
    assert plugins.host_entry("github").max_body == 65_536 and plugins.host_entry("gitlab").max_body == 1_000_000


def _rating(level: str = "critical") -> Rating:
    probs = {"critical": 0.02, "major": 0.02, "minor": 0.02, "trivial": 0.02}
    probs[level] = 0.94
    return Rating(probs, level, "student-1", "p1")


def test_a_huge_suggestion_is_dropped_from_the_comment_and_counted_in_the_summary():
    finding = Finding(Anchor("a.py", 3), "eval on input", "llm", code="+x = eval(y)",
                      suggestion="x = int(y)  # " + "z" * 100_000)
    for flavor, limit in (("github", 65_536), ("gitlab", 1_000_000)):
        p = plan([finding], [_rating()], _limits(flavor))
        body = p.create[0].body
        dropped = len(finding.suggestion) + 200 > limit
        assert len(body) <= limit and markers.decode(body) is not None
        assert ("suggestion" in body) is not dropped
        assert ("1 suggestion(s) were too long" in p.summary) is dropped


def test_a_huge_review_text_is_cut_and_the_marker_kept():
    finding = Finding(Anchor("a.py", 3), "w" * 200_000, "sarif:tool", code="+x = 1")
    body = plan([finding], [_rating()], _limits("github")).create[0].body
    assert len(body) <= 65_536 and "(cut to fit)" in body and markers.decode(body).fingerprint


def test_a_5000_file_diff_gets_a_summary_within_githubs_limit():
    skips = [Skip(f"pkg/module_{i:05d}/generated_file_with_a_long_name.bin", "binary file (no text diff)")
             for i in range(5000)]
    findings = [Finding(Anchor(f"src/f{i}.py", 10), f"naming nit number {i} " + "x" * 120, "ruff",
                        code=f"+v{i} = 1") for i in range(300)]
    p = plan(findings, [_rating("trivial")] * 300, replace(_limits("github"), threshold=Severity.MAJOR), (),
             tuple(skips))
    assert len(p.summary) <= 65_536 and p.summary.endswith(markers.SUMMARY_MARKER)
    assert "5000 item(s) not reviewed" in p.summary and "… and 4950 more item(s)" in p.summary
    assert "300 finding(s) below the threshold" in p.summary and "… and 250 more finding(s)" in p.summary
    local = plan(findings, [_rating("trivial")] * 300, PlanConfig(threshold=Severity.MAJOR, flavor="local"), (),
                 tuple(skips))
    assert "… and 4950 more" in local.summary  # lists are short everywhere; only the hard cut needs a limit


def test_fit_text_keeps_the_marker_at_the_end():
    body = "a" * 100 + "\n" + markers.SUMMARY_MARKER
    cut = render.fit_text(body, 90, markers.SUMMARY_MARKER)
    assert len(cut) <= 90 and cut.endswith(markers.SUMMARY_MARKER) and "cut to fit" in cut
    assert render.fit_text(body, None, markers.SUMMARY_MARKER) == body


def test_failures_are_listed_in_the_summary_one_line_each():
    summary = render.with_failures("## Sieve review\n\n" + markers.SUMMARY_MARKER,
                                   ["reviewer sarif: cannot read x.sarif", "rating stopped after 3 of 9 findings"])
    assert "2 part(s) failed" in summary and "- reviewer sarif: cannot read x.sarif" in summary
    assert summary.endswith(markers.SUMMARY_MARKER) and "the run fails" in summary
