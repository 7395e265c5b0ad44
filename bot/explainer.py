"""The student explains: greedy sentences for several posted findings at once, on the rater's own llama.cpp model.

How (one model in memory, two contexts):

* the rater's ``Llama`` keeps its context and its severity adapter; the explainer opens a second llama.cpp
  context on the *same* loaded weights, with the explanation adapter set on it (``models/<student>/explain/``,
  see :func:`explainer_folder`), so neither the weights nor the rating KV cache are touched or duplicated;
* that context holds several sequences over one unified KV cache: the shared instruction is evaluated once and
  copied to every sequence, the findings' bodies are evaluated in one batch, and each greedy step decodes one
  token for every unfinished sentence in one batch — on a CPU a batch of six costs far less than six passes;
* decoding is greedy except that a token which would complete a token trigram already in that sentence (tokens
  compared by their letters and digits, without case; punctuation left out) is skipped for the next best
  (:func:`greedy`, per sequence, on its own logits row): a small model's favourite failure is a loop, and a loop
  is dropped by the checks anyway;
* each step also drafts, per sentence, the tokens that followed its last few tokens in that finding's own prompt
  (prompt lookup: sentences often quote the rule's documentation) and checks them in the same batch; greedy
  decoding keeps a drafted token only where it would have picked it, so the text is unchanged and steps are saved;
* each sentence stops at the end of its line, at the end-of-generation token, or at :data:`bot.explain.MAX_TOKENS`
  tokens; :func:`bot.explain.accept` then keeps it or drops it.

Without an explainer folder the base weights explain zero-shot (what ``--model base`` gives); the checks drop
whatever that says badly.
"""

from __future__ import annotations

import ctypes
import json
import logging
import re
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import numpy as np

from bot import explain
from bot.errors import ModelError

log = logging.getLogger(__name__)

FOLDER = "explain"
MANIFEST = "manifest.json"
#: Sequences decoded together; findings beyond this are explained in further rounds.
MAX_SEQUENCES = 8
_BATCH = 512
#: No n-gram of this many tokens occurs twice in one generated sentence (0 turns the rule off). Tokens are
#: compared by their letters and digits without case, so "The result of" repeats " the result of", and tokens
#: of punctuation or spaces alone do not count (as the word check of :func:`bot.explain.repetitive` reads it).
NO_REPEAT_NGRAM = 3
#: Tokens drafted ahead per sentence and step by prompt lookup (0 turns drafting off; see Explainer.draft).
LOOKAHEAD = 6
#: Longest run of the sentence's last tokens looked up in the prompt to draft from.
LOOKUP_NGRAM = 3
#: Candidates tried, best first, before a blocked token is taken anyway (never reached in practice).
_MAX_TRIES = 64


def repeat_blocked(generated: Sequence[Hashable], n: int = NO_REPEAT_NGRAM) -> set[Hashable]:
    """What would complete an ``n``-gram already present in ``generated`` (the sentence so far, prompt
    excluded): wherever the last ``n - 1`` items occurred before, the item that followed them then."""
    if n <= 0 or len(generated) < n - 1:
        return set()
    if n == 1:
        return set(generated)
    tail = tuple(generated[len(generated) - n + 1:])
    return {generated[i + n - 1] for i in range(len(generated) - n + 1)
            if tuple(generated[i: i + n - 1]) == tail}


def spelling(text: str) -> str:
    """What the no-repeat rule compares of a token: its letters and digits, lower-cased ("The", " the" and "the`"
    are one word; a token of spaces or punctuation alone has none)."""
    return re.sub(r"[\W_]+", "", text.lower())


def greedy(logits: np.ndarray, generated: Sequence[int] = (), n: int = NO_REPEAT_NGRAM,
           key: Callable[[int], Hashable] | None = None) -> int:
    """The highest-scoring token of one sequence's logits row that does not complete an ``n``-gram its sentence
    already holds, tokens compared by ``key`` (the token id itself when None; a token whose key is "" — spaces,
    punctuation — is left out of the n-grams and never blocked). The row itself is left as it is (it belongs to
    llama.cpp)."""
    keyed = [k for k in map(key, generated) if k != ""] if key else list(generated)
    blocked = repeat_blocked(keyed, n) - {""}
    best = int(np.argmax(logits))
    if not blocked or (key(best) if key else best) not in blocked:
        return best
    row = np.array(logits, dtype=np.float32, copy=True)
    for _ in range(_MAX_TRIES):
        row[best] = -np.inf
        best = int(np.argmax(row))
        if (key(best) if key else best) not in blocked:
            break
    return best


def explainer_folder(adapter_path: str | Path | None) -> Path | None:
    """The explanation adapter's folder for a student whose rating adapter is ``adapter_path``: ``explain/`` beside
    it, when that holds a manifest; None otherwise."""
    if not adapter_path:
        return None
    folder = Path(adapter_path).parent / FOLDER
    return folder if (folder / MANIFEST).is_file() else None


def explainer_adapter(folder: Path, base_sha256: str | None = None) -> Path:
    """The verified adapter file of an explainer folder: the manifest's prompt version must be the one this Sieve
    renders, the adapter's bytes must hash to the manifest's sha256, and (when given) the base must match."""
    from bot.models import sha256_full

    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {folder / MANIFEST}: {exc}", hint="restore the explainer folder") from None
    if manifest.get("prompt_version") != explain.EXPLAIN_PROMPT_VERSION:
        raise ModelError(f"{folder}: the explainer was trained on prompt {manifest.get('prompt_version')!r}",
                         hint=f"this Sieve renders {explain.EXPLAIN_PROMPT_VERSION}; retrain the explainer")
    adapter = manifest.get("adapter") or {}
    path = folder / str(adapter.get("file", "adapter.gguf"))
    if not path.is_file() or sha256_full(path) != adapter.get("sha256"):
        raise ModelError(f"explainer adapter {path} is missing or does not match its manifest",
                         hint="restore the file or re-export the explainer")
    expected_base = (manifest.get("base") or {}).get("sha256")
    if base_sha256 and expected_base and expected_base != base_sha256:
        raise ModelError(f"{folder}: the explainer was trained on another base model",
                         hint="use the explainer exported for this student's base")
    return path


class Explainer:
    """Batched greedy explanations on an already loaded ``llama_cpp.Llama`` (the rater's). Not thread-safe."""

    def __init__(self, llm, adapter_path: str | Path | None = None, *, n_threads: int = 2,
                 sequences: int = MAX_SEQUENCES, max_tokens: int = explain.MAX_TOKENS, n_ctx: int = 2048,
                 no_repeat: int = NO_REPEAT_NGRAM, lookahead: int = LOOKAHEAD) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._llm = llm
        self.sequences = max(1, int(sequences))
        self.max_tokens = max(1, int(max_tokens))
        self.no_repeat = max(0, int(no_repeat))
        self.lookahead = max(0, int(lookahead))
        self._keys: dict[int, str] = {}
        self._has_newline: dict[int, bool] = {}
        #: drafted tokens proposed and kept by greedy decoding since this explainer opened (benchmarks read them)
        self.drafted = self.accepted = 0
        #: where the time went since this explainer opened: evaluating prompts (tokens, seconds) and decoding
        #: (steps, logit rows asked for, seconds) — benchmarks/explanations.py reports the split
        self.spent = {"prompt_tokens": 0, "prompt_s": 0.0, "steps": 0, "rows": 0, "decode_s": 0.0}
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, _BATCH, _BATCH
        params.n_seq_max, params.kv_unified = self.sequences, True
        params.n_threads = params.n_threads_batch = n_threads
        from bot.rater.locate import quiet_native

        with quiet_native():  # llama.cpp reports its cache layout on stderr
            self._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=_BATCH, embd=0, n_seq_max=self.sequences, verbose=False)
        self._adapter = None
        if adapter_path:
            with quiet_native():  # where the weights sit in an AMX buffer, llama.cpp reports each LoRA tensor's
                self._adapter = llama_cpp.llama_adapter_lora_init(  # fallback to a plain one on stderr
                    llm._model.model, str(adapter_path).encode("utf-8"))
            if not self._adapter:
                self.close()
                raise ModelError(f"llama.cpp rejected the explainer adapter {adapter_path}",
                                 hint="the adapter must be a GGUF LoRA exported for this student's base")
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapter)
            if llama_cpp.llama_set_adapters_lora(self._ctx.ctx, adapters, 1, (ctypes.c_float * 1)(1.0)):
                self.close()
                raise ModelError(f"could not apply the explainer adapter {adapter_path}",
                                 hint="re-export the explainer for this base")
        self._n_vocab = llm.n_vocab()
        self.adapter_path = Path(adapter_path) if adapter_path else None

    def close(self) -> None:
        """Free this context (the weights belong to the rater; an adapter is freed with its model)."""
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is not None:
            ctx.close()

    def _tokens(self, text: str, bos: bool) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    # -- decoding ------------------------------------------------------------------------------

    def _decode(self, items: Sequence[tuple[int, int, int, bool]]) -> list[int]:
        """Evaluate (token, position, sequence, wants logits) items, in chunks of the batch size; returns the
        batch indices of the logit rows asked for, all of which must lie in the last chunk."""
        wanted: list[int] = []
        for start in range(0, len(items), _BATCH):
            chunk = items[start: start + _BATCH]
            batch = self._batch.batch
            batch.n_tokens = len(chunk)
            for j, (token, pos, seq, want) in enumerate(chunk):
                batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = token, pos, 1, want
                batch.seq_id[j][0] = seq
            self._ctx.decode(self._batch)
            wanted = [j for j, item in enumerate(chunk) if item[3]]
        return wanted

    def _argmax(self, row: int, generated: Sequence[int] = ()) -> int:
        logits = np.ctypeslib.as_array(self._ctx.get_logits_ith(row), shape=(self._n_vocab,))
        return greedy(logits, generated, self.no_repeat, self._key)

    def _key(self, token: int) -> str:
        """A token's :func:`spelling`, cached."""
        text = self._keys.get(token)
        if text is None:
            text = self._keys[token] = spelling(self._llm.detokenize([token]).decode("utf-8", errors="replace"))
        return text

    def token_ids(self, request: explain.Request) -> tuple[list[int], list[int]]:
        """(shared prefix with BOS, this finding's body): tokenised apart, exactly as training does."""
        return self._tokens(explain.INSTRUCTION, True), self._tokens(explain.render_body(request), False)

    def generate(self, requests: Sequence[explain.Request]) -> list[str]:
        """Raw greedy continuations, :attr:`sequences` findings per round."""
        return [self._llm.detokenize(g).decode("utf-8", errors="replace") for g in self.generate_tokens(requests)]

    def generate_tokens(self, requests: Sequence[explain.Request]) -> list[list[int]]:
        """The generated token ids of each continuation (what :meth:`generate` detokenises)."""
        out: list[list[int]] = []
        for start in range(0, len(requests), self.sequences):
            out += self._round(requests[start: start + self.sequences])
        return out

    def _round(self, requests: Sequence[explain.Request]) -> list[list[int]]:
        """One batch: the prefix once (copied to every sequence), the bodies together, then per step one token
        for every unfinished sentence, each followed by its drafted tokens (:meth:`draft`), all in one batch."""
        prefix = self._tokens(explain.INSTRUCTION, True)
        room = max(8, (self._ctx.n_ctx() - len(prefix)) // len(requests) - self.max_tokens)
        bodies = [self.token_ids(r)[1][-room:] for r in requests]
        started = time.perf_counter()
        self._ctx.kv_cache_clear()
        self._decode([(t, i, 0, False) for i, t in enumerate(prefix)])
        for seq in range(1, len(bodies)):
            self._ctx.kv_cache_seq_cp(0, seq, -1, -1)
        inner = [(t, len(prefix) + k, s, False) for s, b in enumerate(bodies) for k, t in enumerate(b[:-1])]
        if inner:
            self._decode(inner)
        rows = dict(enumerate(self._decode([(b[-1], len(prefix) + len(b) - 1, s, True)
                                             for s, b in enumerate(bodies)])))
        position = [len(prefix) + len(b) for b in bodies]
        self.spent["prompt_tokens"] += len(prefix) + sum(map(len, bodies))
        self.spent["prompt_s"] += time.perf_counter() - started
        started = time.perf_counter()
        generated: list[list[int]] = [[] for _ in bodies]
        active = list(range(len(bodies)))
        while active:
            step: list[tuple[int, int, int, bool]] = []
            plan: dict[int, tuple[int, list[int]]] = {}
            for seq in active:
                if len(generated[seq]) >= self.max_tokens:
                    continue
                token = self._argmax(rows[seq], generated[seq])
                if self._stops(generated[seq], token):
                    continue
                generated[seq].append(token)
                draft = self.draft(bodies[seq], generated[seq], self.max_tokens - len(generated[seq]))
                plan[seq] = (len(step), draft)
                step += [(t, position[seq] + j, seq, True) for j, t in enumerate([token, *draft])]
            if not step:
                break
            found = self._decode(step)
            self.spent["steps"] += 1
            self.spent["rows"] += len(step)
            for seq, (start, draft) in plan.items():
                row, accepted = found[start], 0
                for j, proposed in enumerate(draft):  # keep the draft while it is what greedy decoding says
                    if self._argmax(row, generated[seq]) != proposed:
                        break
                    generated[seq].append(proposed)
                    accepted, row = accepted + 1, found[start + 1 + j]
                position[seq] += 1 + accepted
                self.drafted, self.accepted = self.drafted + len(draft), self.accepted + accepted
                if accepted < len(draft):  # the rejected tail leaves the cache
                    self._ctx.kv_cache_seq_rm(seq, position[seq], -1)
                rows[seq] = row
            active = list(plan)
        self.spent["decode_s"] += time.perf_counter() - started
        return generated

    def draft(self, body: Sequence[int], generated: Sequence[int], room: int) -> list[int]:
        """Prompt-lookup drafting: where the sentence's last :data:`LOOKUP_NGRAM` (or fewer, down to two) tokens
        occur in the finding's own prompt — the rule's rationale above all, which a sentence often quotes — the
        tokens that follow there, at most :attr:`lookahead` and ``room``, up to the end of that line. Greedy
        decoding checks every drafted token (:meth:`_round`), so drafting changes the speed, never the text."""
        if self.lookahead <= 0 or room <= 0:
            return []
        for n in range(min(LOOKUP_NGRAM, len(generated)), 1, -1):
            tail = list(generated[-n:])
            for i in range(len(body) - n - 1, -1, -1):
                if list(body[i: i + n]) == tail:
                    out = []
                    for token in body[i + n: i + n + min(self.lookahead, room)]:
                        if self._newline(token):
                            break
                        out.append(token)
                    if out:
                        return out
        return []

    def _newline(self, token: int) -> bool:
        cached = self._has_newline.get(token)
        if cached is None:
            cached = self._has_newline[token] = b"\n" in self._llm.detokenize([token])
        return cached

    def _stops(self, generated: list[int], token: int) -> bool:
        """True when ``token`` ends the sentence: end of generation, or a new line after some text."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token)) or self._ends_line(generated, token)

    def _ends_line(self, generated: list[int], token: int) -> bool:
        """True when ``token`` starts a new line after some text (the sentence's line is over)."""
        return b"\n" in self._llm.detokenize([token]) and bool(generated)

    # -- public API ----------------------------------------------------------------------------

    def explain(self, requests: Sequence[explain.Request]) -> list[str]:
        """One checked sentence per request ("" where the model had nothing that passes the checks)."""
        if not requests:
            return []
        if self._ctx is None:
            raise ModelError("this explainer was closed", hint="create a new one")
        texts = self.generate(requests)
        return [explain.accept(text, r) for text, r in zip(texts, requests)]
