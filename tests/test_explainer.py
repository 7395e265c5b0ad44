"""bot.explainer on real GGUF models through llama.cpp: the shipped explainer on the demo, the bare base, and a
tampered adapter. Findings come from the real review path (ruff on examples/change.patch)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot import app, explain
from bot.config import Config
from bot.errors import ModelError
from bot.explainer import Explainer, explainer_adapter, explainer_folder
from bot.models import resolve_model
from bot.rater.llamacpp import LlamaCppRater

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def demo_findings():
    config = Config()
    source = app.Source(diff=(ROOT / "examples/change.patch").read_bytes(), name="demo",
                        read_file=app.worktree_reader(ROOT / "examples/demo"), repo_root=ROOT / "examples/demo")
    parsed, _ = app.parse_diff(source.diff, config)
    findings, _, errors = app.run_reviewers(parsed, source, config)
    assert not errors and len(findings) == 7
    return findings


@pytest.fixture(scope="module")
def rated():
    info = resolve_model("default")
    rater = LlamaCppRater(**info.rater_options())
    findings = demo_findings()
    yield rater, findings, rater.rate(findings)
    rater.close()


def test_the_shipped_student_has_a_verified_explainer():
    info = resolve_model("default")
    folder = explainer_folder(info.adapter_path)
    assert folder is not None and folder.parent == info.folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["prompt_version"] == explain.EXPLAIN_PROMPT_VERSION
    assert manifest["base"]["sha256"] == info.manifest["base"]["sha256"]
    assert {"hyperparameters", "metrics", "library_versions", "data_hash"} <= set(manifest)
    assert explainer_adapter(folder).is_file()


def test_every_demo_finding_gets_a_sentence_that_passes_the_checks(rated):
    rater, findings, ratings = rated
    texts = rater.explain_many(findings, ratings)
    assert len(texts) == 7
    for text, request in zip(texts, explain.requests_for(findings, ratings)):
        assert text, f"no explanation for {request.review!r}"
        assert explain.problem(text, request) == "" and "\n" not in text


def test_the_bare_base_shows_only_what_passes_the_checks(rated):
    rater, findings, ratings = rated
    bare = Explainer(rater.llama, None, n_threads=rater.n_threads)
    try:
        requests = explain.requests_for(findings, ratings)
        raw = bare.generate(requests)
        shown = bare.explain(requests)
    finally:
        bare.close()
    assert len(raw) == len(shown) == 7
    assert any(explain.accept(text, r) == "" for text, r in zip(raw, requests))  # the untrained base fails some
    assert all(text == "" or explain.problem(text, r) == "" for text, r in zip(shown, requests))


def test_batches_larger_than_the_context_holds_are_done_in_rounds(rated):
    rater, findings, ratings = rated
    small = Explainer(rater.llama, explainer_adapter(explainer_folder(rater.adapter_path)),
                      n_threads=rater.n_threads, sequences=3)
    try:
        texts = small.explain(explain.requests_for(findings, ratings))
    finally:
        small.close()
    assert len(texts) == 7 and sum(bool(t) for t in texts) >= 5


def test_a_tampered_explainer_is_refused_and_the_review_goes_on(tmp_path: Path, caplog):
    folder = tmp_path / "mine"
    shutil.copytree(resolve_model("default").folder, folder)
    adapter = folder / "explain" / "adapter.gguf"
    data = bytearray(adapter.read_bytes())
    data[-1] ^= 0xFF
    adapter.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its manifest"):
        explainer_adapter(folder / "explain")
    info = resolve_model(str(folder))
    rater = LlamaCppRater(**info.rater_options())
    try:
        findings = demo_findings()[:2]
        ratings = rater.rate(findings)
        with caplog.at_level(logging.WARNING, logger="bot.rater.llamacpp"):
            assert rater.explain_many(findings, ratings) == ["", ""]
        assert "explanations left out" in caplog.text and "does not match its manifest" in caplog.text
    finally:
        rater.close()


def test_json_and_sarif_carry_the_explanation_of_posted_findings(tmp_path: Path):
    outputs = {}
    for fmt in ("json", "sarif"):
        done = subprocess.run([sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())",
                               "review", "--diff", "examples/change.patch", "--repo", "examples/demo", "--explain",
                               "--format", fmt], cwd=ROOT, capture_output=True, timeout=600, check=False)
        assert done.returncode in (0, 1), done.stderr.decode()[-500:]
        outputs[fmt] = json.loads(done.stdout)
    findings = outputs["json"]["findings"]
    assert all((f["explanation"] is not None) == f["posted"] for f in findings)
    results = outputs["sarif"]["runs"][0]["results"]
    assert [r["properties"]["explanation"] for r in results] == [f["explanation"] for f in findings]
