"""The teacher–student loop end to end: real fine-tune (2 steps), real GGUF export, the real llama.cpp rater."""

from __future__ import annotations

import json

import pytest

from bot.models import resolve_model
from tests.fake_openai import ScriptedOpenAIServer, chat_reply
from training.exam import item_key, split_heldout, stratified_sample
from training.examples import dump_jsonl, load_jsonl, severity_split
from training.loop import LoopConfig, llamacpp_rater, run_loop
from training.registry import PromotionRule
from training.teacher import DatasetTeacher, DatasetTeacherConfig, OpenAITeacher, OpenAITeacherConfig


@pytest.fixture(scope="module")
def small():
    if not severity_split("train").is_file():
        pytest.skip("shared severity data (../shared/data/severity) is not present")
    pool = stratified_sample(load_jsonl(severity_split("train")), 20, seed=5)
    return split_heldout(pool, 6, seed=0)


@pytest.mark.slow
def test_one_round_trains_exports_evaluates_and_promotes(tmp_path, small) -> None:
    pytest.importorskip("peft")
    from training.finetune import FinetuneConfig

    heldout, rest = small
    teacher = DatasetTeacher(rest, DatasetTeacherConfig(seed=0), exclude=heldout.item_keys())
    # labelled items folded in as feedback: the teacher aims at the levels the base gets wrong (all but
    # critical), and the candidate's lexical prior needs every level in its curriculum
    dump_jsonl([e for e in rest if e.label == "critical"], tmp_path / "feedback.jsonl")
    config = LoopConfig(run_dir=str(tmp_path / "run"), rounds=1, exam_size=4, examples_per_round=8,
                        feedback=(str(tmp_path / "feedback.jsonl"),),
                        start_from="smollm2", model_name="default", models_root=str(tmp_path / "models"),
                        promotion=PromotionRule(min_gain=-1.0),  # promote whatever comes out: tests the path
                        finetune=FinetuneConfig(max_steps=2, grad_accum=1, lr=2e-3, checkpoint_every=0),
                        lexical_weight=0.5)  # a lexical prior fitted on the curriculum goes with the candidate
    lines: list[str] = []
    result = run_loop(config, teacher, heldout, log=lines.append)

    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["round"] for entry in log] == [0, 1]
    entry = log[1]
    assert entry["finetune"]["steps"] == 2 and entry["heldout"]["n"] == 6 and entry["exam"]["n"] == 4
    assert set(entry["proficiency"]) >= {"overall"} and entry["promoted"] is True
    assert result.promoted == [1] and result.stop_reason == "1 rounds done"
    assert lines[0].startswith("round 0: smollm2-base held-out") and "promoted" in lines[1]
    curriculum = load_jsonl(tmp_path / "run" / "round-01" / "curriculum.jsonl")
    assert curriculum and not {item_key(e) for e in curriculum} & heldout.item_keys()

    model = resolve_model("default", tmp_path / "models")  # sha256 verified
    assert model.adapter_path is not None and model.manifest["metrics"]["exam"] == entry["heldout"]
    assert model.manifest["parent"] is None or model.manifest["parent"].startswith("smollm2")
    assert model.lexical == (tmp_path / "models" / "default" / "lexical.json", 0.5) and "+lexical@" in model.model_id
    student, base = llamacpp_rater(model), llamacpp_rater(resolve_model("smollm2"))
    pair = [(heldout.items[0].code, heldout.items[0].review)]
    tuned, plain = student.rate_texts(pair)[0], base.rate_texts(pair)[0]
    student.close()
    base.close()
    assert tuned.model_id == model.model_id
    assert max(abs(tuned.probabilities[k] - plain.probabilities[k]) for k in plain.probabilities) > 1e-4

    # the next run, on no new feedback, carries this run's curriculum forward (`sieve train loop --previous`)
    # and trains on from the adapter in service (the default; `--fresh` opts out)
    again = LoopConfig(run_dir=str(tmp_path / "run2"), rounds=1, exam_size=4, examples_per_round=4,
                       previous=(str(tmp_path / "run" / "round-01" / "curriculum.jsonl"),),
                       start_from="default", model_name="default", models_root=str(tmp_path / "models"),
                       promotion=PromotionRule(min_gain=-1.0),
                       finetune=FinetuneConfig(max_steps=1, grad_accum=1, lr=2e-3, checkpoint_every=0, rank=4))
    run_loop(config=again, teacher=DatasetTeacher(rest, DatasetTeacherConfig(seed=1), exclude=heldout.item_keys()),
             heldout=heldout, log=lambda _: None)
    carried = load_jsonl(tmp_path / "run2" / "round-01" / "curriculum.jsonl")
    stats = json.loads((tmp_path / "run2" / "round-01" / "curriculum.stats.json").read_text())
    assert {item_key(e) for e in curriculum} <= {item_key(e) for e in carried}
    assert stats["previous"] == sum(e.meta["origin"] == "previous" for e in carried) > 0
    second = resolve_model("default", tmp_path / "models")
    assert second.lexical[1] == 0.5  # the parent's weight, kept
    assert second.manifest["hyperparameters"]["init_adapter"] == str(model.adapter_path)
    assert second.manifest["hyperparameters"]["rank"] == 16  # the parent's LoRA shape, not the config's rank 4
    assert second.model_id != model.model_id


@pytest.mark.slow
def test_a_spent_teacher_budget_ends_the_run_cleanly(tmp_path, small) -> None:
    heldout, _ = small
    with ScriptedOpenAIServer() as server:
        server.push(chat_reply(json.dumps({"items": []}), prompt_tokens=60, completion_tokens=60))
        teacher = OpenAITeacher(OpenAITeacherConfig(base_url=server.url, max_tokens=100, backoff_s=0.0, batch=4),
                                exclude=heldout.item_keys())
        config = LoopConfig(run_dir=str(tmp_path / "run"), rounds=3, exam_size=4, start_from="smollm2",
                            models_root=str(tmp_path / "models"))
        result = run_loop(config, teacher, heldout, log=lambda _: None)
    assert result.rounds == [] and result.promoted == []
    assert result.stop_reason.startswith("teacher token budget spent (120 of 100 tokens)")
    assert not (tmp_path / "models" / "default").exists()


@pytest.mark.slow
def test_cli_finetune_and_export_carry_the_code_cap_into_the_manifest(tmp_path, small) -> None:
    """`sieve train finetune --code-chars 0` then `export --manifest`: the rater reads the review alone."""
    pytest.importorskip("peft")
    from training.cli import main as train_main

    _, pool = small
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"code": e.code, "review": e.review, "label": e.label}) + "\n"
                            for e in pool[:4]), encoding="utf-8")
    assert train_main(["finetune", "--data", str(data), "--out", str(tmp_path / "ft"), "--max-steps", "1",
                       "--grad-accum", "2", "--code-chars", "0"]) == 0
    trained = json.loads((tmp_path / "ft" / "adapter" / "sieve_finetune.json").read_text())
    assert trained["config"]["code_chars"] == 0 and trained["template"] == "chatml"
    out = tmp_path / "blind" / "adapter.gguf"
    assert train_main(["export", "--peft", str(tmp_path / "ft" / "adapter"), "--out", str(out), "--manifest"]) == 0
    model = resolve_model(out.parent)
    assert model.code_chars == 0 and model.template == "chatml"
    assert train_main(["finetune", "--data", str(data), "--out", str(tmp_path / "ft2"), "--max-steps", "1",
                       "--grad-accum", "2", "--code-chars", "0", "--init-adapter", str(out)]) == 0
    again = json.loads((tmp_path / "ft2" / "adapter" / "sieve_finetune.json").read_text())
    assert again["config"]["init_adapter"] == str(out)
    rater = llamacpp_rater(model)
    try:
        item = next(e for e in pool if e.code.strip())
        code, review = item.code, item.review
        assert rater.prompt_tokens(code, review)[0] == rater.prompt_tokens("", review)[0]
    finally:
        rater.close()
