"""Model integrity: what rates is exactly what the manifest names, and the model id says so.

Adapters and lexical priors are hashed in full on every load (an edit that keeps size and timestamp is
seen); non-finite numbers are refused; ``--no-lexical`` drops ``+lexical@…`` from the id; a prompt version
the prompt module cannot render is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from bot import app, prompt
from bot import config as cfg
from bot.errors import ModelError
from bot.models import resolve_model
from bot.rater.lexical import FORMAT, LexicalPrior
from bot.rater.locate import packaged_model_path
from bot.severity import LABELS
from training.registry import write_manifest


def prior_json(intercept: list[float] | None = None, weight: float = 0.5) -> str:
    """A tiny but complete lexical prior: one word block with one term."""
    block = {"analyzer": "word", "ngram_range": [1, 1], "lowercase": True, "token_pattern": r"(?u)\b\w\w+\b",
             "sublinear_tf": True, "terms": {"crash": [1.0, weight, 0.0, 0.0, -weight]}}
    return json.dumps({"format": FORMAT, "classes": list(LABELS), "intercept": intercept or [0.0] * 4,
                       "blocks": [block]})


def model_folder(root: Path, *, prior: str | None = None, **manifest_changes: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "adapter.gguf").write_bytes(b"GGUF" + b"weights-1")
    write_manifest(root, name=root.name, base="smollm2", base_path=packaged_model_path(), adapter_file="adapter.gguf",
                   data_hash="h", hyperparameters={}, metrics={}, command="test")
    manifest = json.loads((root / "manifest.json").read_text())
    if prior is not None:
        (root / "lexical.json").write_text(prior)
        digest = hashlib.sha256((root / "lexical.json").read_bytes()).hexdigest()
        manifest["lexical"] = {"file": "lexical.json", "sha256": digest, "weight": 0.5}
    manifest.update(manifest_changes)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def edit_in_place(path: Path, data: bytes) -> None:
    """Overwrite with bytes of the same length and put the old timestamps back (what a memo keyed on size and
    mtime cannot see)."""
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def test_an_adapter_edited_in_place_with_its_timestamp_kept_is_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m")
    assert resolve_model(folder).model_id.startswith("m@")  # hashed once (a memo would remember this)
    edit_in_place(folder / "adapter.gguf", b"GGUF" + b"weights-2")
    with pytest.raises(ModelError, match="adapter .* has sha256 .* the manifest says"):
        resolve_model(folder)


def test_a_prior_edited_in_place_with_its_timestamp_kept_is_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m", prior=prior_json())
    assert "+lexical@" in resolve_model(folder).model_id
    text = (folder / "lexical.json").read_text().replace('"crash"', '"clash"')
    edit_in_place(folder / "lexical.json", text.encode())
    with pytest.raises(ModelError, match="lexical prior .* has sha256 .* the manifest says"):
        resolve_model(folder)


def test_the_prior_is_checked_against_the_bytes_it_parses(tmp_path: Path) -> None:
    path = tmp_path / "lexical.json"
    path.write_text(prior_json())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert LexicalPrior.load(path, digest).classes == list(LABELS)
    with pytest.raises(ModelError, match="has sha256 .* the manifest says 000000000000"):
        LexicalPrior.load(path, "0" * 64)


@pytest.mark.parametrize("text,message", [
    (prior_json(intercept=[float("nan"), 0.0, 0.0, 0.0]), "NaN is not a finite number"),
    (prior_json(weight=float("inf")), "Infinity is not a finite number"),
    (prior_json().replace("[1.0, 0.5", "[1e999, 0.5"), "inf is not a finite number"),
    (prior_json().replace("[1.0, 0.5", '["1.0", 0.5'), "'1.0' is not a finite number"),
])
def test_a_prior_with_non_finite_numbers_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lexical.json"
    path.write_text(text)
    with pytest.raises(ModelError, match=message):
        LexicalPrior.load(path)


@pytest.mark.parametrize("change,message", [
    ({"metrics": {"dev": {"accuracy": float("nan")}}}, "NaN is not a number a manifest may hold"),
    ({"lexical": {"file": "lexical.json", "weight": float("-inf")}}, "-Infinity is not a number"),
    ({"hyperparameters": {"lr": "__HUGE__"}}, "1e999 is not a finite number"),
])
def test_a_manifest_with_non_finite_numbers_is_refused(tmp_path: Path, change: dict, message: str) -> None:
    folder = model_folder(tmp_path / "m", **change)
    text = (folder / "manifest.json").read_text().replace('"__HUGE__"', "1e999")
    (folder / "manifest.json").write_text(text)
    with pytest.raises(ModelError, match=message):
        resolve_model(folder)


@pytest.mark.parametrize("change,message", [
    ({"adapter": "adapter.gguf"}, "adapter must be"),
    ({"base": 7}, "base must be"),
    ({"base": {"file": 7}}, "base must be"),
    ({"prompt_version": 3}, "prompt_version must be a string"),
    ({"lexical": {"file": "lexical.json", "weight": 0.5, "sha256": 1}}, "lexical.sha256 must be a string"),
])
def test_a_manifest_of_the_wrong_shape_is_refused(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_model(model_folder(tmp_path / "m", **change))


def test_a_prompt_version_the_prompt_module_cannot_render_is_refused(tmp_path: Path) -> None:
    assert prompt.PROMPT_VERSION in prompt.VERSIONS
    assert resolve_model(model_folder(tmp_path / "ok", prompt_version=prompt.PROMPT_VERSION)).prompt_version \
        == prompt.PROMPT_VERSION
    folder = model_folder(tmp_path / "old", prompt_version="sieve-severity-v1")
    with pytest.raises(ModelError, match="trained with prompt 'sieve-severity-v1', which this Sieve cannot render"):
        resolve_model(folder)


def test_no_lexical_drops_the_prior_from_the_model_id(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m", prior=prior_json())
    info = resolve_model(folder)
    both, alone = info.rater_options(), info.rater_options(lexical=False)
    assert both["model_id"] == info.model_id and "+lexical@" in both["model_id"] and both["lexical_sha256"]
    assert alone["model_id"] == info.model_id.split("+lexical@")[0] and alone["lexical_path"] is None
    assert alone["lexical_weight"] == 0.0 and alone["lexical_sha256"] is None


def test_the_served_rater_names_exactly_what_rates() -> None:
    """The packaged default (student × prior), loaded for real: its id with and without the prior."""
    served = app.make_rater(cfg.from_mapping({"model": "default", "weight_format": "as-is"}))
    alone = app.make_rater(cfg.from_mapping({"model": "default", "lexical": False, "weight_format": "as-is"}))
    assert "+lexical@" in served.model_id and served.lexical is not None
    assert alone.model_id == served.model_id.split("+lexical@")[0] and alone.lexical is None
    (rating,) = alone.rate_texts([("", "possible SQL injection")])
    assert rating.model_id == alone.model_id
