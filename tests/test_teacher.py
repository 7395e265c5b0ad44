"""Teachers: the dataset teacher on real data, the OpenAI-compatible teacher against a scripted server."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bot.errors import EndpointError, TrainingError
from bot.severity import LABELS
from tests.fake_openai import Reply, ScriptedOpenAIServer, chat_reply, error_reply
from training.exam import item_key, split_heldout
from training.examples import Example, load_jsonl, severity_split
from training.teacher import (
    TEACHERS,
    DatasetTeacher,
    DatasetTeacherConfig,
    OpenAITeacher,
    OpenAITeacherConfig,
    TeacherBudgetSpent,
    to_proficiency,
)


@pytest.fixture(scope="module")
def train() -> list[Example]:
    if not severity_split("train").is_file():
        pytest.skip("shared severity data (../shared/data/severity) is not present")
    return load_jsonl(severity_split("train"))


def test_dataset_teacher_exams_are_balanced_seeded_and_change_each_round(train) -> None:
    teacher = DatasetTeacher(train, DatasetTeacherConfig(seed=7))
    first = teacher.write_exam(40)
    assert Counter(e.label for e in first) == {label: 10 for label in LABELS}
    second = teacher.write_exam(40)
    assert [e.id for e in first] != [e.id for e in second]
    replay = DatasetTeacher(train, DatasetTeacherConfig(seed=7))
    assert [e.id for e in replay.write_exam(40)] == [e.id for e in first]


def test_dataset_teacher_grades_and_samples_what_the_student_got_wrong(train) -> None:
    teacher = DatasetTeacher(train, DatasetTeacherConfig(seed=1, wrong_boost=6.0))
    exam = teacher.write_exam(40)
    answers = [e.label if e.label in ("trivial", "critical") else "critical" for e in exam]  # fails major/minor
    evaluation = teacher.grade(exam, answers)
    assert evaluation.report.accuracy == pytest.approx(0.5)
    assert evaluation.proficiency["level:trivial"] == 10 and evaluation.proficiency["level:major"] == 1
    assert evaluation.weak_areas[:2] == ["level:major", "level:minor"]
    assert not {"level:trivial", "level:critical"} & set(evaluation.weak_areas)
    assert "weakest" in evaluation.feedback
    written = teacher.write_examples(evaluation.weak_areas, 200)
    counts = Counter(e.label for e in written)
    share = (counts["major"] + counts["minor"]) / len(written)
    base_share = sum(e.label in ("major", "minor") for e in train) / len(train)
    assert share > base_share + 0.15


def test_dataset_teacher_never_hands_out_heldout_items(train) -> None:
    heldout, _ = split_heldout(train, 60, seed=0)
    teacher = DatasetTeacher(train, DatasetTeacherConfig(seed=2), exclude=heldout.item_keys())
    seen = set()
    for _ in range(3):
        exam = teacher.write_exam(80)
        seen |= {item_key(e) for e in exam}
        evaluation = teacher.grade(exam, ["minor"] * len(exam))
        seen |= {item_key(e) for e in teacher.write_examples(evaluation.weak_areas, 300)}
    assert seen and not seen & heldout.item_keys()


def test_dataset_teacher_attaches_out_of_fold_soft_labels(train) -> None:
    teacher = DatasetTeacher(train[:120], DatasetTeacherConfig(soft_labels=True, folds=3))
    written = teacher.write_examples([], 20)
    assert all(e.soft and sum(e.soft.values()) == pytest.approx(1.0) for e in written)


def test_registry_builds_both_teachers() -> None:
    assert {"dataset", "openai"} <= set(TEACHERS.names())
    assert to_proficiency(0.0) == 1 and to_proficiency(1.0) == 10 and to_proficiency(0.5) == 6


# ----------------------------------------------------------------------------- OpenAI-compatible teacher


def items_reply(items: list[dict], tokens: int = 10) -> Reply:
    return chat_reply(json.dumps({"items": items}), prompt_tokens=tokens, completion_tokens=tokens)


def item(i: int, label: str = "major") -> dict:
    return {"code": f"total = price * {i}", "review": f"wrong total in case {i}", "label": label}


def make_teacher(server: ScriptedOpenAIServer, **overrides) -> OpenAITeacher:
    settings = {"base_url": server.url, "model": "scripted", "backoff_s": 0.0, "batch": 5, **overrides}
    config = OpenAITeacherConfig(**settings)
    return OpenAITeacher(config)


def test_exam_items_are_validated_and_broken_json_is_retried() -> None:
    with ScriptedOpenAIServer() as server:
        server.push(chat_reply('{"items": [{"code": "x", '),  # cut off mid-answer
                    items_reply([item(1), item(2, "blocker"), item(1), {"code": "", "review": "r", "label": "minor"},
                                 {"code": "y = 2", "review": "  ", "label": "minor"}, item(3, "Critical")]),
                    items_reply([item(4, "trivial"), item(5, "minor")]))
        teacher = make_teacher(server)
        exam = teacher.write_exam(4)
        request = server.requests[0]["body"]
    assert [e.label for e in exam] == ["major", "critical", "trivial", "minor"]
    assert all(e.id.startswith("teacher-") and e.source == "teacher:scripted" for e in exam)
    assert sorted(r.split(": ", 1)[1] for r in teacher.rejections) == [
        "duplicate", "empty code", "empty review", "unknown label 'blocker'"]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["properties"]["items"]["items"]["properties"][
        "label"]["enum"] == list(LABELS)
    assert teacher.usage.calls == 3 and teacher.usage.retries == 1 and teacher.usage.rejected_items == 4


def test_rate_limits_and_server_errors_are_retried_then_reported() -> None:
    with ScriptedOpenAIServer() as server:
        server.push(error_reply(429, "slow down", headers={"Retry-After": "0"}), error_reply(503, "busy"),
                    items_reply([item(1), item(2)]))
        teacher = make_teacher(server)
        assert len(teacher.write_examples(["level:major"], 2)) == 2
        assert "level:major" in server.requests[-1]["body"]["messages"][0]["content"]
        assert teacher.usage.retries == 2
        server.push(*[error_reply(500, "down")] * 4)
        with pytest.raises(EndpointError, match="failed after 4 attempts: HTTP 500"):
            teacher.write_examples([], 2)


def test_a_refused_request_is_not_retried_and_the_key_never_shows(monkeypatch) -> None:
    monkeypatch.setenv("SIEVE_TEACHER_API_KEY", "sk-wrongwrongwrongwrong123")
    with ScriptedOpenAIServer(api_key="sk-rightrightrightright456") as server:
        teacher = make_teacher(server)
        with pytest.raises(EndpointError) as info:
            teacher.write_exam(2)
        assert len(server.requests) == 1
    assert "401" in str(info.value) and "wrongwrong" not in str(info.value)
    monkeypatch.setenv("SIEVE_TEACHER_API_KEY", "sk-rightrightrightright456")
    with ScriptedOpenAIServer(api_key="sk-rightrightrightright456") as server:
        server.push(items_reply([item(1), item(2)]))
        assert len(make_teacher(server).write_exam(2)) == 2


def test_token_budget_stops_cleanly_and_keeps_what_was_produced() -> None:
    with ScriptedOpenAIServer() as server:
        server.push(items_reply([item(1), item(2)]), items_reply([item(3), item(4)]), items_reply([item(5)]))
        teacher = make_teacher(server, batch=2, max_tokens=25)  # each reply costs 20 tokens
        with pytest.raises(TeacherBudgetSpent, match="teacher token budget spent") as info:
            teacher.write_exam(6)
        assert len(server.requests) == 2  # the third request was never sent
    assert isinstance(info.value, TrainingError)
    assert [e.label for e in info.value.partial] == ["major"] * 4
    assert teacher.usage.total == 40


def test_grading_maps_proficiency_feedback_weak_areas_and_new_examples() -> None:
    exam = [Example(code="os.system(cmd)", review="shell injection", label="critical"),
            Example(code="x=1", review="name it better", label="trivial"),
            Example(code="a/b", review="b may be zero", label="major")]
    verdict = {"proficiency": {"overall": 4, "critical": 7, "major": 2, "minor": 5, "trivial": 12},
               "feedback": "Confuses crashes with wrong results.", "weak_areas": ["major", "error handling"],
               "examples": [item(9), item(9), item(10, "nope")]}
    with ScriptedOpenAIServer() as server:
        server.push(chat_reply(json.dumps(verdict), prompt_tokens=1000, completion_tokens=500))
        teacher = make_teacher(server, price_prompt_per_m=2.0, price_completion_per_m=8.0)
        evaluation = teacher.grade(exam, ["critical", "trivial", "critical"])
        prompt = server.requests[0]["body"]["messages"][0]["content"]
    assert "correct: major; student: critical" in prompt
    assert evaluation.proficiency["overall"] == 4 and evaluation.proficiency["level:trivial"] == 10
    assert evaluation.weak_areas[:2] == ["level:major", "error handling"]
    assert evaluation.feedback.startswith("Confuses")
    assert evaluation.report.accuracy == pytest.approx(2 / 3)
    assert len(evaluation.examples) == 1
    assert teacher.round_usage() == {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                                     "calls": 1, "retries": 0, "rejected_items": 2, "cost_usd": 0.006}
    assert teacher.round_usage()["total_tokens"] == 0  # a new round starts from zero


def test_top_logprobs_become_soft_labels() -> None:
    def with_logprobs(_request) -> Reply:
        reply = chat_reply("major")
        reply.json["choices"][0]["logprobs"] = {"content": [{"token": "major", "logprob": -0.2, "bytes": None,
            "top_logprobs": [{"token": "major", "logprob": -0.2, "bytes": None},
                             {"token": "crit", "logprob": -1.9, "bytes": None},
                             {"token": "the", "logprob": -3.0, "bytes": None}]}]}
        return reply

    with ScriptedOpenAIServer() as server:
        server.push(items_reply([item(1)]), with_logprobs)
        teacher = make_teacher(server, soft_labels=True)
        (example,) = teacher.write_examples([], 1)
        body = server.requests[1]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert example.soft["major"] > example.soft["critical"] > 0 and example.soft["trivial"] == 0
