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
