"""Faster rating in-process, checked against the adapter form one finding at a time: several findings per decode
call (bot/rater/batch.py) and the adapter merged into the base (bot/rater/merge.py), on the packaged default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.models import resolve_model
from bot.severity import LABELS

llamacpp = pytest.importorskip("bot.rater.llamacpp")
pytestmark = pytest.mark.slow

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "severity" / "dev.jsonl"


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    if not DEV.is_file():
        pytest.skip(f"shared data not found at {DEV}")
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines()[:10]]
    return [(row["code"], row["review"]) for row in rows]


@pytest.fixture(scope="module")
def one_at_a_time(pairs):
    rater = llamacpp.LlamaCppRater(**resolve_model("default").rater_options())
    try:
        yield rater.rate_texts(pairs)
    finally:
        rater.close()


def gap(a, b) -> float:
    return max(abs(x.probabilities[k] - y.probabilities[k]) for x, y in zip(a, b, strict=True) for k in LABELS)


def test_findings_batched_in_one_decode_call_rate_as_one_at_a_time(pairs, one_at_a_time) -> None:
    rater = llamacpp.LlamaCppRater(**resolve_model("default").rater_options(), batch=4)
    try:
        batched = rater.rate_texts(pairs)
        again = rater.rate_texts(pairs[3:] + pairs[:3])  # other groups, a prefix already in the cache
    finally:
        rater.close()
    assert gap(batched, one_at_a_time) <= 1e-3
    assert gap(again, one_at_a_time[3:] + one_at_a_time[:3]) <= 1e-3
    # the shared prefix is evaluated once per group, not once per finding
    assert sum(r.tokens for r in batched) < sum(r.tokens for r in one_at_a_time) + 200


def test_the_adapter_merged_into_an_f16_base_rates_as_the_adapter_form(pairs, one_at_a_time) -> None:
    pytest.importorskip("gguf")
    rater = llamacpp.LlamaCppRater(**resolve_model("default").rater_options(), weight_format="merged-f16")
    try:
        assert rater.weights_path.name.endswith(".f16.merged.gguf")
        assert rater.llama._lora_adapter is None  # merged: the adapter is not applied a second time
        merged = rater.rate_texts(pairs)
    finally:
        rater.close()
    assert gap(merged, one_at_a_time) <= 1e-3
