"""The explanation judge and benchmark, end to end against the scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.errors import EndpointError, TrainingError
from tests.fake_openai import ScriptedOpenAIServer, chat_reply, error_reply
from tests.students import student_with_explainer
from training.explain_judge import Judge, Verdict, differential, parse_verdict

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "analysers"


def test_verdicts_are_read_only_from_the_json_asked_for():
    assert parse_verdict('{"better": "A", "reason": "concrete"}') == ("A", "concrete")
    assert parse_verdict('```json\n{"better": "tie"}\n```')[0] == "tie"
    for broken in ("A is better", '{"better": "C"}', "[]", '{"winner": "A"}', ""):
        with pytest.raises(TrainingError, match="not the JSON asked for"):
            parse_verdict(broken)


def test_positions_are_drawn_so_a_judge_that_always_says_a_favours_no_system():
    with ScriptedOpenAIServer(api_key="sk-judge-secret-1234") as server:
        server.default = lambda request: chat_reply('{"better": "A", "reason": "first"}')
        import os

        os.environ["SIEVE_TEST_JUDGE_KEY"] = "sk-judge-secret-1234"
        try:
            judge = Judge(server.url, "scripted", api_key_env="SIEVE_TEST_JUDGE_KEY", seed=0)
            verdicts = [judge.compare(review="r", code="", severity="minor", x="x", y="y") for _ in range(20)]
        finally:
            del os.environ["SIEVE_TEST_JUDGE_KEY"]
    result = differential(verdicts)
    assert result["n"] == 20 and result["ties"] == 0
    assert 4 <= result["wins"] <= 16 and result["wins"] + result["losses"] == 20
    assert all("Explanation A: x" in r["body"]["messages"][1]["content"]
               or "Explanation A: y" in r["body"]["messages"][1]["content"] for r in server.requests)
    assert all("sk-judge" not in json.dumps(r) for r in server.requests)


def test_a_failing_judge_endpoint_is_an_endpoint_error():
    with ScriptedOpenAIServer() as server:
        server.default = lambda request: error_reply(404, "no such model")
        judge = Judge(server.url, "missing")
        with pytest.raises(EndpointError, match="answered HTTP 404"):
            judge.compare(review="r", code="", severity="minor", x="x", y="y")
    assert differential([Verdict("x", ""), Verdict("tie", "")])["differential"] == 0.5


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_against_the_fake_judge(tmp_path: Path):
    from benchmarks import explanations

    if not (SHARED / "rationale.jsonl").is_file():
        pytest.skip("../shared/data/analysers is not here")
    out = tmp_path / "result.json"
    student = student_with_explainer(tmp_path / "mine")
    with ScriptedOpenAIServer() as server:
        server.default = lambda request: chat_reply('{"better": "B", "reason": "more concrete"}')
        code = explanations.main(["--model", str(student), "--n", "3", "--samples", "2",
                                  "--judge-base-url", server.url,
                                  "--judge-model", "scripted", "--judge-n", "3", "--no-repeat-ablation",
                                  "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["held_out_findings"] == 3 and len(result["samples"]) == 2
    for other in ("base", "template", "vendor"):
        verdict = result["judge"][f"student_vs_{other}"]
        assert verdict["n"] == 3 and verdict["wins"] + verdict["losses"] + verdict["ties"] == 3
        assert -1.0 <= verdict["differential"] <= 1.0
    assert len(server.requests) == 9
    for system in ("student", "base", "template"):
        figures = result["systems"][system]
        assert set(figures["overlap_raw"]) == {"rouge1_f", "rougeL_f"}
        assert abs(sum(figures["checks"].values()) - 1.0) < 1e-3
        # where the rule's rationale was in the prompt, how much of it was copied, and how much is this finding's
        assert set(figures["copying"]) == {"n", "verbatim", "binds"} and figures["copying"]["n"] <= 3
        assert 0 <= figures["overlap_raw_no_rule"]["n"] <= 3
    # written sentences are decoded with the no-repeat-trigram rule, and the ablation says what it changes
    assert result["systems"]["student"]["no_repeat_ngram"] == 3
    ablation = result["systems"]["student_repeats"]
    assert ablation["no_repeat_ngram"] == 0 and 0.0 <= ablation["grounding"]["repetitive"] <= 1.0


@pytest.mark.slow
def test_a_judge_that_answers_broken_json_stops_the_benchmark_with_one_line(capsys, tmp_path: Path):
    from benchmarks import explanations

    if not (SHARED / "rationale.jsonl").is_file():
        pytest.skip("../shared/data/analysers is not here")
    student = student_with_explainer(tmp_path / "mine")
    with ScriptedOpenAIServer() as server:
        server.default = lambda request: chat_reply("Explanation A is clearly better.")
        code = explanations.main(["--model", str(student), "--n", "1", "--samples", "1",
                                  "--judge-base-url", server.url, "--judge-n", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: the judge's answer is not the JSON asked for") and err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.slow
def test_cost_only_times_the_demo_and_keeps_the_held_out_figures_in_the_manifest(tmp_path: Path):
    from benchmarks import explanations

    student = student_with_explainer(tmp_path / "mine")
    manifest = student / "explain" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["metrics"] = {"systems": {"student": {"kept": True}}}
    manifest.write_text(json.dumps(data))
    out = tmp_path / "cost.json"
    code = explanations.main(["--model", str(student), "--cost-only", "--demo-runs", "1", "--out", str(out),
                              "--manifest", str(student / "explain")])
    assert code == 0
    result = json.loads(out.read_text())
    assert "systems" not in result and "samples" not in result
    cost = result["cost"]
    assert cost["runs"] == 1 and cost["posted_findings"] >= 1
    assert len(cost["demo_wall_s"]["on"]) == len(cost["demo_wall_s"]["off"]) == 1
    assert cost["batched_s_per_finding"]["p50"] > 0 and cost["demo_ratio_p50"] > 0
    assert cost["batched_without_drafting_s_per_finding"]["p50"] > 0 and 0 <= cost["drafted_tokens_kept"] <= 1
    assert cost["reread_s_per_finding"]["p50"] >= 0
    split = cost["batched_split"]  # the demo's bodies are evaluated once per batch, then one step per token or so
    assert split["prompt_tokens"] > 20 * cost["posted_findings"] and split["steps"] >= 1
    assert split["logit_rows"] >= split["steps"] and split["prompt_s"] > 0 and split["decode_s"] > 0
    assert split["prompt_s"] + split["decode_s"] <= cost["batched_s_per_finding"]["p95"] * cost["posted_findings"]
    assert [row["rule"] for row in result["demo"]] == ["E711", "F401", "S608", "E722", "S307", "S602", "F821"]
    metrics = json.loads(manifest.read_text())["metrics"]
    assert metrics["systems"] == {"student": {"kept": True}} and metrics["cost"] == cost


@pytest.mark.slow
def test_with_rating_student_each_finding_is_explained_and_checked_at_the_students_own_rating(tmp_path: Path):
    from benchmarks import explanations
    from bot.models import resolve_model
    from bot.rater.llamacpp import LlamaCppRater

    if not (SHARED / "rationale.jsonl").is_file():
        pytest.skip("../shared/data/analysers is not here")
    student = student_with_explainer(tmp_path / "mine")
    items = explanations.held_out_items(3, 0)
    rater = LlamaCppRater(**resolve_model(str(student)).rater_options())
    try:  # the rating serving would post: the finding's code, text and origin
        own = {item.group: rating.severity for item, rating in
               zip(items, rater.rate_texts([(item.code, item.review, item.origin) for item in items]))}
    finally:
        rater.close()
    vendor = {item.group: item.severity for item in items}
    assert own != vendor  # this student disagrees with the vendor somewhere, so the two modes differ
    out = tmp_path / "result.json"
    assert explanations.main(["--model", str(student), "--n", "3", "--samples", "3", "--rating", "student",
                              "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rating"] == "student"
    assert {row["rule"]: row["severity"] for row in result["samples"]} == own
    agree = sum(own[g] == vendor[g] for g in own) / 3
    assert result["rated_as_vendor"] == round(agree, 4)
