"""training.explain_train: items are tokenised as the server tokenises them, and a real one-step run on SmolLM2
exports an adapter that llama.cpp loads beside the rater and generates from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import explain
from bot.explainer import Explainer
from bot.rater.llamacpp import LlamaCppRater
from training.explain_data import Item
from training.explain_train import ExplainConfig, encode, train, write_manifest

pytestmark = pytest.mark.slow

ITEMS = [
    Item(id="t:1", group="ruff:S608", tool="ruff", rule="S608", severity="critical",
         review="S608 Possible SQL injection vector through string-based query construction",
         code='row = db.execute(f"SELECT data FROM orders WHERE id = {order_id}")', origin="ruff S608, level: security",
         target="Building the query from `order_id` lets a caller change the SQL it runs."),
    Item(id="t:2", group="ruff:F401", tool="ruff", rule="F401", severity="minor",
         review="F401 `os` imported but unused", target="`os` imported but unused: unused imports slow start-up."),
]


def test_training_tokenises_each_item_exactly_as_the_server_does(tmp_path: Path):
    from transformers import AutoTokenizer

    from bot.models import packaged_base

    for base in ("smollm2", "gemma3-270m"):
        path = packaged_base(base)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        rater = LlamaCppRater(model_path=path, cache_dir=tmp_path, weight_format="as-is", n_ctx=512)
        explainer = Explainer(rater.llama, None, n_threads=rater.n_threads, n_ctx=512)
        try:
            for item in ITEMS:
                prefix, body = explainer.token_ids(item.request())
                sentence = rater.llama.tokenize(explain.target_text(item.target).encode(), add_bos=False,
                                                special=False)
                enc = encode(item, tokenizer, 10_000)
                assert enc.ids == prefix + body + sentence, base
                assert enc.n_target == len(sentence)
        finally:
            explainer.close()
            rater.close()


def test_one_step_trains_exports_and_serves(tmp_path: Path):
    from training.export import export_adapter

    config = ExplainConfig(base="smollm2", rank=4, alpha=8, freeze_layers=20, grad_accum=2, examples=2,
                           checkpoint_every=0)
    run = train(ITEMS, config, tmp_path / "run")
    assert run["steps"] == 1 and run["items"] == 2 and len(run["losses"]) == 1 and run["losses"][0] > 0
    adapter = export_adapter(tmp_path / "run" / "adapter", tmp_path / "explain" / "adapter.gguf", base="smollm2")
    manifest = write_manifest(tmp_path / "explain", config=config, adapter=adapter, data_hash="h", run=run,
                              metrics={"held_out": {}}, command="test")
    data = json.loads(manifest.read_text())
    assert data["prompt_version"] == explain.EXPLAIN_PROMPT_VERSION and data["hyperparameters"]["rank"] == 4
    assert "torch" in data["library_versions"] and data["adapter"]["sha256"]
    rater = LlamaCppRater(cache_dir=tmp_path, n_ctx=512)
    explainer = Explainer(rater.llama, adapter, n_threads=rater.n_threads, n_ctx=512, max_tokens=8)
    try:
        raw = explainer.generate([item.request() for item in ITEMS])
    finally:
        explainer.close()
        rater.close()
    assert len(raw) == 2 and all(isinstance(text, str) for text in raw)
