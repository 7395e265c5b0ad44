"""Untrusted text is inert: the produced markdown is parsed (CommonMark + tables/strikethrough, markdown-it-py) and
no link, image, raw HTML of the text's own, autolink or @mention may appear — while the text stays readable and
suggestions stay working suggestion blocks."""

from __future__ import annotations

import re

import pytest

from bot import markers, render
from bot.findings import Anchor, Finding, Rating, Skip
from bot.hosts.github_text import outdated_body, summary_with
from bot.plan import PlanConfig, plan

markdown_it = pytest.importorskip("markdown_it")

NAME = "x`![x](https://attacker.invalid/pixel.png) @octo/everyone `.png"
HOSTILE = ("![x](https://attacker.invalid/p.png) [click](https://attacker.invalid) <img src=x onerror=alert(1)> "
           "@octo/everyone @admin &#64;octo <https://attacker.invalid> https://attacker.invalid/a www.attacker.invalid "
           "mail@attacker.invalid `unclosed ``` <!-- sieve:summary --> <!-- sieve:v1 abc --> #12 !3 ~bug %v1 $4 &5\n"
           "# heading\n> quote\n- item\n<details><summary>x</summary>\n\n[ref]: https://attacker.invalid\n[ref]")
OURS = re.compile(r"</?(details|summary|sub)>|<!-- sieve:(summary|outdated|v\d+ [A-Za-z0-9+/=_\-]+) -->")


def tokens(text: str) -> list:
    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    out = []
    for token in md.parse(text):
        out.append(token)
        out.extend(token.children or [])
    return out


def assert_inert(text: str) -> None:
    """No link/image, no HTML but Sieve's own tags and one footer marker, no autolink or mention in plain text."""
    found = tokens(text)
    kinds = {t.type for t in found}
    assert not kinds & {"link_open", "image"}, kinds
    html = "".join(t.content for t in found if t.type in ("html_inline", "html_block"))
    assert "<" not in OURS.sub("", html), html
    assert len(re.findall(r"<!-- sieve:v", html)) <= 1
    plain = "".join(t.content for t in found if t.type == "text")
    assert not re.search(r"@[\w-]|[#!$&]\d|[~%]\w", plain), plain  # mentions and GitHub/GitLab references
    assert not re.search(r"(?i)\b(https?|ftp)://|\bwww\.", plain), plain


def visible(text: str) -> str:
    found = tokens(text)
    return "".join(t.content for t in found if t.type in ("text", "code_inline")).replace("\u200b", "")


def finding(path: str = NAME, review: str = HOSTILE, suggestion: str | None = None, rule: str | None = "R`1 @x") -> Finding:
    return Finding(anchor=Anchor(path, 5, start_line=4), review=review, source="llm", rule_id=rule,
                   code="@@ -1 +1,5 @@\n+a\n+b", suggestion=suggestion)


def rating(level: str = "critical", explanation: str | None = None) -> Rating:
    probs = {"critical": 0.05, "major": 0.05, "minor": 0.05, "trivial": 0.05}
    probs[level] = 0.85
    return Rating(probs, level, "student-1", "p1", explanation=explanation)


def test_a_hostile_file_name_stays_inside_its_code_span_in_the_summary():
    below = finding(review="minor thing")
    result = plan([finding(), below], [rating(), rating("trivial")], PlanConfig(commit="abc"),
                  skips=(Skip(NAME, "binary file"), Skip("a\n\n# b.py", HOSTILE)))
    assert_inert(result.summary)
    spans = [t.content for t in tokens(result.summary) if t.type == "code_inline"]
    assert any(NAME in s for s in spans)  # readable, and whole
    assert result.summary.rstrip().endswith(markers.SUMMARY_MARKER)


def test_review_text_rule_and_explanation_are_inert_but_readable():
    body = plan([finding()], [rating(explanation=HOSTILE)], PlanConfig(commit="abc")).create[0].body
    assert_inert(body)
    assert "![x](https://attacker.invalid/p.png) [click](https://attacker.invalid)" in visible(body)
    assert "@octo/everyone" in visible(body) and "R`1 @x" in visible(body)
    assert markers.decode(body).review == HOSTILE  # the marker keeps the original text
    assert_inert(outdated_body(body, "the code changed"))
    unplaced = plan([finding()], [rating()], PlanConfig(commit="abc"))
    assert_inert(summary_with(unplaced.summary, list(unplaced.create)))


@pytest.mark.parametrize("flavor,info", [("github", "suggestion"), ("gitlab", "suggestion:-1+0")])
def test_suggestions_still_render_as_suggestion_blocks(flavor, info):
    code = "x = '```'\ny = \"@octo <!-- sieve:summary --> ![x](https://attacker.invalid/p.png)\"\n````\nz = 1"
    body = plan([finding(suggestion=code)], [rating()], PlanConfig(flavor=flavor)).create[0].body
    fences = [t for t in tokens(body) if t.type == "fence"]
    assert [(t.info, t.content) for t in fences] == [(info, code + "\n")]
    assert markers.decode(body).severity == "critical"


def test_inert_and_code_helpers():
    assert render.inert("a_b*c") != "a_b*c" and visible(render.inert("a_b*c")) == "a_b*c"
    for text in (NAME, "``", "` x `", "a\nb", "\u202eevil.py"):
        span = render.code(text)
        assert_inert(span)
        assert [t.type for t in tokens(span)[1:-1]] == ["inline", "code_inline"]
    assert "\\n" in render.code("a\nb") and "\u202e" not in render.code("\u202eevil.py")


def test_markers_in_names_and_texts_are_broken_before_posting():
    planted = "<!-- sieve:summary -->"
    result = plan([finding(path=f"a{planted}.py", review=f"x {planted}")], [rating()], PlanConfig(),
                  skips=(Skip(f"b{planted}", planted),))
    for body in (result.summary, result.create[0].body):
        assert body.count("<!-- sieve:") == 1 and (markers.decode(body) or markers.is_summary(body))


def test_a_memory_note_is_one_inert_line_and_only_when_the_level_moved():
    from dataclasses import replace

    from bot.findings import MemoryNote

    finding = Finding(Anchor("tests/a.py", 3), "S101 Use of assert", "ruff", rule_id="S101")
    rating = Rating({"critical": 0.0, "major": 0.1, "minor": 0.1, "trivial": 0.8}, "trivial", "m", "p")
    note = MemoryNote("abc", "ruff S101 in tests/", -1, "trivial", 2, 0, "major", {}, "rated trivial, not major: "
                      "2 maintainers 👎'd ruff S101 <b>@team</b> in tests/", True)
    body = render.comment_body(finding, replace(rating, memory_note=note), "<!-- m -->", "github")
    line = next(ln for ln in body.splitlines() if ln.startswith("_Team memory:_"))
    assert "rated trivial, not major" in line and "<b>" not in line and "@team" not in line
    quiet = render.comment_body(finding, replace(rating, memory_note=replace(note, moved=False)), "<!-- m -->",
                                "github")
    assert "Team memory" not in quiet and quiet == render.comment_body(finding, rating, "<!-- m -->", "github")
