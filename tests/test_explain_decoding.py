"""No repeated token trigram in a generated sentence: the blocking rule on hand-made logits, and the real base
model decoding through bot.explainer with the rule on and off."""

from __future__ import annotations

import numpy as np
import pytest

from bot import explain
from bot.explainer import greedy, repeat_blocked, spelling


def trigrams(tokens: list[int]) -> list[tuple[int, ...]]:
    return [tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)]


def test_the_token_that_would_repeat_a_trigram_is_blocked():
    # "a b c a b" → the next "c" would make (a, b, c) twice
    assert repeat_blocked([1, 2, 3, 1, 2]) == {3}
    # every earlier place the last two tokens occurred blocks what followed them there
    assert repeat_blocked([1, 2, 3, 1, 2, 4, 1, 2]) == {3, 4}
    assert repeat_blocked([1, 2, 3, 4]) == set()
    assert repeat_blocked([7]) == set() and repeat_blocked([]) == set()
    assert repeat_blocked([5, 5, 5, 5], n=3) == {5}
    assert repeat_blocked([1, 2, 1], n=2) == {2}
    assert repeat_blocked([1, 2, 3, 1, 2], n=0) == set()


def test_greedy_takes_the_best_token_that_repeats_no_trigram():
    logits = np.array([0.0, 1.0, 2.0, 9.0, 5.0], dtype=np.float32)
    assert greedy(logits, [1, 2, 0]) == 3  # nothing to block: plain argmax
    assert greedy(logits, [1, 2, 3, 1, 2]) == 4  # 3 would repeat (1, 2, 3): the next best
    assert greedy(logits, [1, 2, 3, 1, 2], n=0) == 3  # the rule off
    assert logits[3] == 9.0  # the row is not written to
    looping = [1, 2, 3, 1, 2, 4, 1, 2]
    assert greedy(logits, looping) == 2
    assert trigrams(looping + [greedy(logits, looping)]).count((1, 2, 2)) == 1


def test_tokens_are_compared_without_case_or_surrounding_space():
    words = {0: "The", 1: " result", 2: " of", 3: " the", 4: " Result", 5: " outcome"}

    def key(token: int) -> str:
        return spelling(words[token])

    logits = np.array([0.0, 9.0, 0.0, 0.0, 8.0, 1.0], dtype=np.float32)
    # "The result of the": (of, the) has not occurred before, so nothing is blocked yet
    assert greedy(logits, [0, 1, 2, 3], key=key) == 1
    # "The result of the result of the": (of, the) was followed by "result": both spellings of it are blocked
    assert greedy(logits, [0, 1, 2, 3, 1, 2, 3], key=key) == 5
    assert greedy(logits, [0, 1, 2, 3, 1, 2, 3]) == 4  # by id alone the other spelling slips through


def test_punctuation_between_words_does_not_hide_a_repeat():
    words = {0: " non", 1: "-", 2: "lowercase", 3: " `", 4: "value", 5: "`", 6: " value", 7: " name"}

    def key(token: int) -> str:
        return spelling(words[token])

    logits = np.array([0, 0, 0, 0, 0, 0, 9.0, 1.0], dtype=np.float32)
    # "non-lowercase `value`… non-lowercase" → " value" would repeat (non, lowercase, value): "name" instead
    assert greedy(logits, [0, 1, 2, 3, 4, 5, 0, 1, 2], key=key) == 7
    assert greedy(logits, [0, 1, 2, 3, 4, 5, 0, 1, 2]) == 6  # by id, the backticks hid it
    # punctuation itself is never blocked
    punct = np.array([0, 9.0, 0, 0, 0, 0, 0, 1.0], dtype=np.float32)
    assert greedy(punct, [0, 1, 2, 0, 1, 2, 0], key=key) == 1


def test_a_greedy_loop_on_hand_made_logits_never_repeats_a_trigram():
    # a "model" whose logits always prefer the token after the last one, cycling 0→1→2→0: plain greedy loops
    def step(tokens: list[int], n: int) -> int:
        logits = np.zeros(6, dtype=np.float32)
        logits[(tokens[-1] + 1) % 3] = 5.0
        logits[3:] = [1.0, 0.5, 0.25]
        return greedy(logits, tokens, n)

    plain, blocked = [0], [0]
    for _ in range(12):
        plain.append(step(plain, 0))
        blocked.append(step(blocked, 3))
    assert len(set(trigrams(plain))) < len(trigrams(plain))  # the loop the rule is for
    assert len(set(trigrams(blocked))) == len(trigrams(blocked))


@pytest.mark.slow
def test_the_base_model_writes_no_repeated_trigram_with_the_rule_and_loops_without_it():
    from bot.explainer import Explainer
    from bot.models import resolve_model
    from bot.rater.llamacpp import LlamaCppRater
    from tests.test_explainer import demo_findings

    info = resolve_model("default")
    assert info.base_path.name == "gemma-3-270m-q4_k_m.gguf"
    rater = LlamaCppRater(**info.rater_options())
    findings = demo_findings()
    requests = explain.requests_for(findings, rater.rate(findings))
    # a finding that quotes the loop the untrained student once wrote: the bare base copies it, loop and all
    requests.append(explain.Request(review="1st, but not the 1st, but not the 1st", severity="minor"))
    on = Explainer(rater.llama, None, n_threads=rater.n_threads)
    off = Explainer(rater.llama, None, n_threads=rater.n_threads, no_repeat=0)
    try:
        with_rule, without = on.generate_tokens(requests), off.generate_tokens(requests)
        on_key = on._key
    finally:
        on.close()
        off.close()
        rater.close()
    assert len(with_rule) == len(without) == 8

    def words(tokens: list[int]) -> list[str]:  # as the rule reads a sentence: spellings, punctuation left out
        return [w for w in map(on_key, tokens) if w]

    assert all(len(set(trigrams(words(t)))) == len(trigrams(words(t))) for t in with_rule)
    assert any(len(set(trigrams(words(t)))) < len(trigrams(words(t))) for t in without)  # the base does loop
