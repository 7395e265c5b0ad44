"""The llama.cpp student rater on the real packaged SmolLM2 GGUF (loaded once per module)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bot.errors import ConfigError, ModelError
from bot.findings import Anchor, Finding
from bot.prompt import PROMPT_VERSION
from bot.rater import RATERS
from bot.rater.locate import packaged_model_path, resolve_weights
from bot.severity import LABELS, Severity, mass_at_least

llamacpp = pytest.importorskip("bot.rater.llamacpp")

EXAMPLES = [
    ("@@ -10,4 +10,4 @@ def load(path):\n-    return open(path).read()\n+    return eval(open(path).read())",
     "eval() on file contents lets anyone who controls the file run arbitrary code."),
    ("@@ -3,3 +3,3 @@ def total(items):\n-    return sum(i.price for i in items)\n+    return sum(i.price for i in items[1:])",
     "This skips the first item, so every total is wrong."),
    ("@@ -1,3 +1,3 @@\n-def getUser(id):\n+def get_user(id):\n     \"\"\"Return user\"\"\"",
     "Nit: the docstring should end with a period."),
    ("@@ -20,2 +20,3 @@ class Cache:\n     def get(self, key):\n+        print('cache lookup', key)\n         return self._d[key]",
     "Leftover debug print; it spams stdout on every lookup."),
]


def _finding(code: str, review: str) -> Finding:
    return Finding(anchor=Anchor(path="app.py", line=1), review=review, source="test", code=code)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sieve-cache")


@pytest.fixture(scope="module")
def rater(cache: Path):
    instance = llamacpp.LlamaCppRater(cache_dir=cache)
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def ratings(rater):
    return rater.rate([_finding(code, review) for code, review in EXAMPLES])


def test_ratings_are_distributions(ratings, rater) -> None:
    assert len(ratings) == len(EXAMPLES)
    for rating in ratings:
        assert list(rating.probabilities) == list(LABELS)
        assert abs(math.fsum(rating.probabilities.values()) - 1.0) <= 1e-6
        assert all(0.0 < p < 1.0 for p in rating.probabilities.values())
        assert rating.severity == max(LABELS, key=lambda label: rating.probabilities[label])
        assert rating.prompt_version == PROMPT_VERSION
        assert rating.model_id == rater.model_id == "SmolLM2-135M-Instruct.Q4_1"
        assert rating.tokens > 0


def test_default_weights_are_the_cached_f16_copy(rater, cache: Path) -> None:
    assert rater.source_path == packaged_model_path()
    assert rater.weights_path.parent == cache / "f16"
    stamp = rater.weights_path.stat().st_mtime_ns
    assert resolve_weights(rater.source_path, "f16", cache=cache) == rater.weights_path
    assert rater.weights_path.stat().st_mtime_ns == stamp  # reused, not converted again


def test_rerun_is_identical(rater, ratings) -> None:
    again = rater.rate([_finding(code, review) for code, review in EXAMPLES])
    assert [r.probabilities for r in again] == [r.probabilities for r in ratings]


def test_prefix_reuse_matches_cold_runs(rater, ratings) -> None:
    """Tolerance 1e-4 per probability: a cold run evaluates the prefix in the same batch as the body."""
    for index, ((code, review), warm) in enumerate(zip(EXAMPLES, ratings)):
        rater.reset_cache()
        cold = rater.rate([_finding(code, review)])[0]
        if index:  # the first warm rating was itself cold; the others reused the prefix
            assert cold.tokens > warm.tokens + 100
        for label in LABELS:
            assert abs(cold.probabilities[label] - warm.probabilities[label]) <= 1e-4


def test_rate_texts_equals_rate(rater, ratings) -> None:
    assert [r.probabilities for r in rater.rate_texts(EXAMPLES)] == [r.probabilities for r in ratings]


def test_mass_at_least_is_monotone_in_threshold(ratings) -> None:
    for rating in ratings:
        masses = [mass_at_least(rating.probabilities, level) for level in sorted(Severity)]
        assert masses == sorted(masses, reverse=True)
        assert abs(masses[0] - 1.0) <= 1e-6


def test_explanation_is_a_single_line(rater, ratings) -> None:
    text = rater.explain(_finding(*EXAMPLES[0]), ratings[0], max_tokens=24)
    assert isinstance(text, str)
    assert "\n" not in text and "<|im_end|>" not in text
    assert rater.explain(_finding(*EXAMPLES[0]), ratings[0], max_tokens=0) == ""


def test_long_input_is_cut_to_fit_a_small_context(cache: Path) -> None:
    small = llamacpp.LlamaCppRater(cache_dir=cache, n_ctx=320)
    try:
        code = "@@ -1,80 +1,80 @@\n" + "\n".join(f"+value_{i} = compute({i}) * factor" for i in range(80))
        rating = small.rate([_finding(code, "The last line divides by zero when factor is 0. " * 8)])[0]
        assert rating.truncated
        assert abs(math.fsum(rating.probabilities.values()) - 1.0) <= 1e-6
    finally:
        small.close()


def test_as_is_and_f16_weights_agree(cache: Path, ratings) -> None:
    """The f16 copy holds the dequantised Q4_1 values: probabilities move by well under 0.05."""
    plain = llamacpp.LlamaCppRater(cache_dir=cache, weight_format="as-is")
    try:
        assert plain.weights_path == packaged_model_path()
        for rating, other in zip(ratings, plain.rate_texts(EXAMPLES)):
            assert max(abs(rating.probabilities[k] - other.probabilities[k]) for k in LABELS) < 0.05
    finally:
        plain.close()


def test_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        llamacpp.LlamaCppRater(tmp_path / "nope.gguf", cache_dir=tmp_path)


@pytest.mark.parametrize("payload", [os.urandom(4096), b"GGUF" + os.urandom(4096)], ids=["garbage", "bad-gguf"])
def test_corrupt_model_is_a_model_error_without_native_noise(tmp_path: Path, payload: bytes, capfd) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(payload)
    with pytest.raises(ModelError) as caught:
        llamacpp.LlamaCppRater(bad, cache_dir=tmp_path, weight_format="as-is")
    assert str(bad) in str(caught.value)
    assert capfd.readouterr().err == ""


def test_missing_or_corrupt_adapter_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="LoRA adapter not found"):
        llamacpp.LlamaCppRater(adapter_path=tmp_path / "missing.gguf", cache_dir=tmp_path)
    bad = tmp_path / "adapter.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(ModelError, match="adapter"):
        llamacpp.LlamaCppRater(adapter_path=bad, cache_dir=tmp_path / "c", weight_format="as-is")


def test_unknown_options_are_config_or_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="template"):
        llamacpp.LlamaCppRater(template="nope", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="weight format"):
        resolve_weights(packaged_model_path(), "int3")  # type: ignore[arg-type]


def test_registry_names_the_builtin_raters() -> None:
    assert {"llamacpp", "openai"} <= set(RATERS.names())


def test_label_bias_shifts_scores_by_exactly_the_offsets(cache: Path, ratings) -> None:
    bias = {"critical": -1.0, "major": 0.5, "minor": 0.0, "trivial": 2.0}
    biased = llamacpp.LlamaCppRater(cache_dir=cache, label_bias=bias)
    try:
        shifted = biased.rate([_finding(code, review) for code, review in EXAMPLES])
    finally:
        biased.close()
    for plain, moved in zip(ratings, shifted):
        # softmax(log p + b): every log-ratio between two labels moves by the difference of their offsets
        for a in LABELS:
            for b in LABELS:
                expected = math.log(plain.probabilities[a] / plain.probabilities[b]) + bias[a] - bias[b]
                assert math.log(moved.probabilities[a] / moved.probabilities[b]) == pytest.approx(expected, abs=1e-6)


def test_code_chars_zero_rates_on_the_review_alone(cache: Path) -> None:
    """A model trained without code (manifest ``code_chars: 0``) reads exactly the code-free prompt."""
    code, review = EXAMPLES[0]
    assert code, "the example needs code for this test to mean anything"
    blind = llamacpp.LlamaCppRater(cache_dir=cache, code_chars=0)
    try:
        assert blind.prompt_tokens(code, review)[0] == blind.prompt_tokens("", review)[0]
        assert blind.rate([_finding(code, review)])[0].probabilities == blind.rate([_finding("", review)])[0].probabilities
    finally:
        blind.close()
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="code_chars"):
            llamacpp.LlamaCppRater(cache_dir=cache, code_chars=bad)  # type: ignore[arg-type]


def test_weights_load_outside_llama_cpps_extra_buffer_types() -> None:
    """While a model loads, llama.cpp's default model parameters keep quantised weights in plain CPU buffers
    (on a CPU with AMX its tile kernels crashed every multi-token decode of a Q4 base); afterwards the library's
    own defaults are back."""
    from llama_cpp import llama as high_level

    from bot.rater.locate import plain_weight_buffers

    assert high_level.llama_cpp.llama_model_default_params().use_extra_bufts
    with plain_weight_buffers():
        assert not high_level.llama_cpp.llama_model_default_params().use_extra_bufts
    assert high_level.llama_cpp.llama_model_default_params().use_extra_bufts


def test_the_quantised_base_as_is_rates_a_batch_without_crashing(cache: Path) -> None:
    """The Q4_1 base loaded as it is (no f16 copy), several findings in one batch: in a child process, so a
    native crash fails this test instead of killing the run."""
    import subprocess
    import sys

    script = ("import sys\nfrom bot.findings import Anchor, Finding\nfrom bot.rater.llamacpp import LlamaCppRater\n"
              "r = LlamaCppRater(weight_format='as-is', cache_dir=sys.argv[1], n_ctx=512)\n"
              "fs = [Finding(anchor=Anchor(path='a.py', line=i + 1), review=t, source='test') for i, t in "
              "enumerate(['eval() runs input', 'docstring nit', 'skips the first item'])]\n"
              "print(len(r.rate(fs)))\n")
    done = subprocess.run([sys.executable, "-c", script, str(cache)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip().splitlines()[-1] == "3"


def test_native_chatter_is_silenced_on_pythons_streams_too(capsys) -> None:
    """llama-cpp-python prints llama.cpp's log lines with ``print(..., file=sys.stderr)``; while a model loads they
    are silenced whatever ``sys.stderr`` is (here pytest's capture, not file descriptor 2)."""
    import sys

    from bot.rater.locate import quiet_native

    with quiet_native():
        print("llama_adapter_lora_init_impl: lora for 'blk.10.attn_k.weight' cannot use buft 'AMX'", file=sys.stderr)
        print("loader chatter")
    print("after", file=sys.stderr)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "after\n"
