"""Feedback: pure records and labels, and `collect`/`export`/`stats` through the real GitLab host and fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import comments, feedback, feedback_app, markers
from bot.hosts.base import CommentFeedback, Reply, Vote
from bot.store import open_store
from tests.fake_gitlab import FakeGitLab
from tests.test_gitlab_host import World, review

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


def marker(severity: str = "major", model: str = "student-v1") -> str:
    probs = {"critical": 0.1, "major": 0.1, "minor": 0.1, "trivial": 0.1}
    probs[severity] = 0.7
    return markers.encode(markers.Marker(
        fingerprint="f" * 16, severity=severity, probabilities=probs, model=model, prompt_version="p1",
        commit="abc", path="pkg/app.py", line=12, review="eval on input", code="@@ -1 +1 @@\n+eval(x)",
        source="llm"))


def item(votes=(), replies=(), body=None, author="sieve-bot") -> CommentFeedback:
    me = comments.Identity("sieve-bot")
    text = body if body is not None else me.seal.seal("text\n" + marker())
    record = comments.read("77", author, text, me)
    return CommentFeedback("gitlab", "g/p", 3, "http://h/g/p/-/merge_requests/3#note_77", record, tuple(votes),
                           tuple(replies))


def test_records_one_per_user_latest_wins_bot_ignored():
    recs = feedback.records_from(item(
        votes=[Vote("dev", "+1", True, "2024-01-01"), Vote("dev", "-1", True, "2024-01-02"),
               Vote("bot", "+1", True), Vote("eve", "-1", False)],
        replies=[Reply("lead", "/sieve severity critical", True, "2024-01-01"),
                 Reply("lead", "on second thought\n/sieve severity minor", True, "2024-01-03"),
                 Reply("bot", "/sieve severity trivial", True), Reply("eve", "/sieve severity bogus", False)]), "bot")
    assert [(r.voter, r.vote, r.trusted, r.correction) for r in recs] == [
        ("dev", -1, True, None), ("eve", -1, False, None), ("lead", 0, True, "minor")]
    assert recs[0].comment.predicted == "major" and recs[0].comment.code.endswith("+eval(x)")
    unmarked = feedback.records_from(item(votes=[Vote("dev", "+1", True)], body="no marker here"), "bot")
    assert [(r.voter, r.comment) for r in unmarked] == [("dev", None)]
    assert feedback.comment_from(item(body="no marker here")) is None


def test_only_sieves_own_comments_become_examples():
    forged = item(votes=[Vote("lead", "+1", True)], author="stranger")
    assert feedback.comment_from(forged) is None
    assert [(r.voter, r.comment) for r in feedback.records_from(forged)] == [("lead", None)]
    own = item(votes=[Vote("lead", "+1", True), Vote("sieve-bot", "+1", True)])
    assert [r.voter for r in feedback.records_from(own)] == ["lead"]  # the author (Sieve) is the bot


def test_verdict_rules():
    info = feedback.comment_from(item())
    assert feedback.verdict(info, [(1, True)], []).label == "major"
    rejected = feedback.verdict(info, [(-1, True), (1, False)], [])
    assert (rejected.label, rejected.vote, rejected.acceptable) == ("major", -1, ("critical", "minor", "trivial"))
    fixed = feedback.verdict(info, [(-1, True)], [("trivial", True, "b"), ("critical", True, "a"),
                                                  ("minor", False, "c")])
    assert (fixed.label, fixed.correction, fixed.trusted) == ("trivial", "trivial", True)
    assert feedback.verdict(info, [(1, False)], [("minor", False, "a")]) is None  # untrusted only
    assert feedback.verdict(info, [(1, False)], [("minor", False, "a")], trusted_only=False).label == "minor"
    assert feedback.verdict(info, [(1, True), (-1, True)], []) is None  # a tie says nothing


@pytest.fixture()
def world(tmp_path: Path):
    with FakeGitLab() as fake:
        w = World(tmp_path, fake)
        review(w, w.host())
        yield w


def notes(world: World) -> dict[str, dict]:
    return {d["notes"][0]["body"].split("\n")[2]: (d, d["notes"][0]) for d in world.mr.discussions
            if not d["individual_note"]}


def test_collect_twice_counts_once_and_tracks_removal(world: World, tmp_path: Path):
    found = notes(world)
    _, eval_note = found["eval on user input runs arbitrary code"]
    up = world.fake.award(eval_note, world.dev, "thumbsup")
    world.fake.award(eval_note, world.stranger, "thumbsdown")
    world.fake.award(eval_note, world.bot, "thumbsup")
    store = open_store(tmp_path / "fb.db")
    first = feedback_app.collect(world.host(), "group/sub/app", None, store)
    assert (first.comments, first.new_votes, first.untrusted) == (6, 2, 1)
    again = feedback_app.collect(world.host(), "group/sub/app", None, store)
    assert (again.new_votes, again.changed_votes, again.removed_votes) == (0, 0, 0)
    assert store.count("votes") == 2
    world.fake.unaward(eval_note, up["id"])
    world.fake.award(eval_note, world.dev, "thumbsdown")  # changed their mind
    _, x12 = found["x12 shadows a module name"]
    other = world.fake.award(x12, world.dev, "thumbsup")
    third = feedback_app.collect(world.host(), "group/sub/app", None, store)
    assert (third.new_votes, third.changed_votes, third.removed_votes) == (1, 1, 0)
    world.fake.unaward(x12, other["id"])
    fourth = feedback_app.collect(world.host(), "group/sub/app", None, store)
    assert fourth.removed_votes == 1 and store.count("votes", "removed=0") == 2


def test_corrections_export_and_stats(world: World, tmp_path: Path):
    found = notes(world)
    disc, eval_note = found["eval on user input runs arbitrary code"]
    world.fake.award(eval_note, world.dev, "thumbsdown")
    world.fake.reply(world.mr, disc, world.dev, "/sieve severity minor")
    disc2, x12 = found["x12 shadows a module name"]
    world.fake.award(x12, world.dev, "thumbsup")
    world.fake.reply(world.mr, disc2, world.stranger, "/sieve severity critical")  # untrusted: kept, not a label
    _, x30 = found["x30 is still used by the report"]
    world.fake.award(x30, world.dev, "thumbsdown")
    world.fake.award(found["use one tuple"][1], world.stranger, "thumbsup")  # untrusted only
    store = open_store(tmp_path / "fb.db")
    stats = feedback_app.collect(world.host(), "group/sub/app", "2000-01-01T00:00:00Z", store)
    assert stats.corrections == 2 and stats.untrusted == 2
    out = tmp_path / "curriculum.jsonl"
    assert feedback_app.export(store, out) == 3
    rows = {r["review"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert (rows["eval on user input runs arbitrary code"]["label"],
            rows["eval on user input runs arbitrary code"]["correction"]) == ("minor", "minor")
    assert rows["x12 shadows a module name"]["label"] == "major" and rows["x12 shadows a module name"]["vote"] == 1
    assert rows["x30 is still used by the report"]["vote"] == -1
    assert all(r["label_quality"] == "feedback" and r["source"].startswith("http://gitlab.test/group/sub/app")
               for r in rows.values())
    assert feedback_app.export(store, out, trusted_only=False) == 4
    train = SHARED / "data" / "severity" / "train.jsonl"
    if train.exists():
        with train.open() as handle:
            assert set(json.loads(handle.readline())) <= set(rows["x12 shadows a module name"])
    table = feedback_app.stats(store)
    assert table == [{"model": "student-v1", "severity": "major", "posted": 6, "voted": 3, "up": 1, "down": 2,
                      "corrected": 1, "up_rate": 0.333}]


def test_train_fields_present_even_without_shared_data():
    info = feedback.comment_from(item())
    ex = feedback.example(info, feedback.verdict(info, [(1, True)], []))
    assert {"code", "review", "label", "acceptable_labels", "label_quality", "lang", "source", "predicted",
            "model", "vote", "trust", "link"} <= set(ex)
    assert ex["lang"] == "py" and ex["trust"] == "trusted"


def test_the_finding_origin_travels_from_marker_through_the_store_into_the_export(tmp_path: Path):
    """The student read "ruff S608, level: security" when it rated the finding; a retrain must show it the same."""
    me = comments.Identity("sieve-bot")
    probs = {"critical": 0.7, "major": 0.1, "minor": 0.1, "trivial": 0.1}
    text = me.seal.seal("text\n" + markers.encode(markers.Marker(
        fingerprint="f" * 16, severity="critical", probabilities=probs, model="student-v1", prompt_version="p1",
        commit="abc", path="pkg/db.py", line=3, review="S608 Possible SQL injection", code="", source="ruff",
        rule_id="S608", level="security")))
    record = comments.read("78", "sieve-bot", text, me)
    assert record.marker.level == "security"
    info = feedback.comment_from(CommentFeedback("gitlab", "g/p", 3, "http://h/g/p/-/merge_requests/3#note_78",
                                                 record, (), ()))
    store = open_store(tmp_path / "fb.db")
    store.sync(info, [feedback.FeedbackRecord("gitlab", "g/p", "78", "dev", -1, True, "minor", "2024-01-01")], "t1")
    store.close()
    store = open_store(tmp_path / "fb.db")
    assert store.comments()[0].level == "security"
    out = tmp_path / "export.jsonl"
    assert feedback_app.export(store, out) == 1
    row = json.loads(out.read_text())
    assert row["origin"] == "ruff S608, level: security" and row["label"] == "minor"
    from training.curriculum import load_feedback

    assert load_feedback(out)[0].meta["origin"] == "ruff S608, level: security"


def test_a_marker_written_before_the_level_field_still_reads_and_exports_tool_and_rule():
    info = feedback.comment_from(item())
    assert info.level is None and feedback.origin_of(info) == ""  # an LLM review has no origin
    old = markers.decode(markers.encode(markers.Marker(
        fingerprint="f" * 16, severity="minor", probabilities={}, model="m", prompt_version="p1", commit="abc",
        path="a.py", line=1, review="E711 Comparison to None", code="", source="ruff", rule_id="E711")))
    assert old.level is None
    assert feedback.origin_of(feedback.CommentInfo(
        host="gitlab", repo="g/p", number=1, comment_id="1", url="", path="a.py", line=1, predicted="minor",
        probabilities={}, model="m", prompt_version="p1", commit="abc", code="", review=old.review,
        reviewer=old.source, rule_id=old.rule_id)) == "ruff E711"
