"""The default student rater: a GGUF model (plus optional LoRA adapter) run in-process by llama.cpp.

How a finding is rated (one forward pass, no free generation):

1. ``bot.prompt.render`` gives prefix + body + answer; the prompt stops where the label begins.
2. The tokens already in the KV cache that match the new prompt (at least the shared instruction
   prefix, evaluated once) are kept; the cache is cut back to that length and only the rest is
   evaluated. Causal attention makes this exact: the kept cells are what a cold run would compute.
3. Logits are requested only at the answer position (and at the inner positions of one multi-token
   label, appended to the same batch: in SmolLM2's vocabulary ``trivial`` is ``tr`` + ``ivial``),
   so every label's whole token sequence is scored without an extra decode call.
4. A softmax over the four sequence log-probabilities gives the rating.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bot.errors import ConfigError, ModelError
from bot.explain import requests_for
from bot.findings import Finding, Rating
from bot.prompt import (
    ANSWER_PREFIX,
    MAX_CODE_CHARS,
    MAX_REVIEW_CHARS,
    TEMPLATES,
    PROMPT_VERSION,
    PromptParts,
    check_version,
    expert_text,
    render,
    truncate_code,
    truncate_review,
    valid_code_chars,
)
from bot.rater.base import make_rating
from bot.rater.lexical import LexicalPrior, combine
from bot.rater.locate import WeightFormat, check_gguf, packaged_model_path, quiet_native, resolve_weights
from bot.severity import LABELS

log = logging.getLogger(__name__)

#: Tighter caps tried, in order, when a prompt does not fit the context window (code first: the
#: commented line is at the end of the excerpt and survives every cut).
_CODE_CUTS = (MAX_CODE_CHARS, 60, 0)
_REVIEW_CUTS = (MAX_REVIEW_CHARS, 300, 150, 60)


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (SMT siblings share one core's ALUs)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((base / "physical_package_id").read_text().strip(), (base / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def prefer_passive_threads() -> bool:
    """Ask OpenMP to let idle llama.cpp worker threads sleep instead of spin, unless the user chose.

    Measured here on 2 cores shared with other jobs (load ≈9): 1.03 s per finding passive vs 3.61 s
    with spinning threads. OpenMP reads the variable when llama.cpp's library loads, so this only
    works before ``llama_cpp`` is first imported; returns whether it can still take effect.
    """
    import sys

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "llama_cpp" not in sys.modules


def _log_softmax(row: np.ndarray) -> np.ndarray:
    top = float(row.max())
    return row - (top + float(np.log(np.exp(row - top, dtype=np.float64).sum())))


class _Unavailable:
    """Stands in for an explainer that could not be opened: every finding gets no sentence."""

    def explain(self, requests) -> list[str]:
        return [""] * len(requests)

    def close(self) -> None:
        return None


_NO_EXPLAINER = _Unavailable()


class LlamaCppRater:
    """Scores the four severity labels with a local GGUF model. Deterministic; not thread-safe.

    ``lora_scale`` multiplies the adapter's low-rank update (llama.cpp applies ``W + scale·ΔW``, ΔW
    already carrying the adapter's alpha/r): 1.0 is the adapter as trained, 0.0 the bare base model.
    ``weight_format``: "auto"/"f16" load a cached f16 copy (≈2× faster prefill on AVX-512 CPUs than
    Q4_1), "as-is" the file itself. ``passive_threads`` (default on) stops idle worker threads from
    spinning, which matters on shared CI runners (see :func:`prefer_passive_threads`). ``label_bias``
    adds a fixed offset per label to the scores before the softmax: a model's prior correction, fitted on
    its held-out exam and recorded in its manifest. ``lexical_path`` + ``lexical_weight`` combine each rating
    with a lexical prior over the review text (:mod:`bot.rater.lexical`; weight 0 leaves the student alone);
    ``lexical_sha256``, when given, must match the prior's bytes.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None,
                 adapter_path: str | os.PathLike[str] | None = None, *, n_ctx: int = 2048,
                 n_threads: int | None = None, template: str = "chatml", model_id: str | None = None,
                 weight_format: WeightFormat = "auto", lora_scale: float = 1.0,
                 cache_dir: str | os.PathLike[str] | None = None, passive_threads: bool = True,
                 label_bias: Mapping[str, float] | None = None, code_chars: int = MAX_CODE_CHARS,
                 lexical_path: str | os.PathLike[str] | None = None, lexical_weight: float = 0.0,
                 lexical_sha256: str | None = None, prompt_version: str = PROMPT_VERSION) -> None:
        if passive_threads and not prefer_passive_threads():
            log.debug("llama_cpp already loaded; OMP_WAIT_POLICY is whatever it was")
        if template not in TEMPLATES:
            raise ConfigError(f"unknown prompt template {template!r}", hint=f"use one of: {', '.join(TEMPLATES)}")
        self.template = template
        self.prompt_version = check_version(prompt_version)
        if not valid_code_chars(code_chars):
            raise ConfigError(f"code_chars must be a whole number >= 0, not {code_chars!r}",
                              hint="0 rates on the review text alone; the packaged prompt keeps 100")
        # the model's own code cap first, then the shorter fallbacks when a prompt does not fit the context
        self._code_cuts = tuple(sorted({code_chars, *(c for c in _CODE_CUTS if c < code_chars)}, reverse=True))
        self.source_path = check_gguf(Path(model_path), "model file") if model_path else packaged_model_path()
        self.adapter_path = check_gguf(Path(adapter_path), "LoRA adapter") if adapter_path else None
        self.n_threads = n_threads or physical_cores()
        self.weights_path = resolve_weights(self.source_path, weight_format, cache=cache_dir,
                                            n_threads=self.n_threads)
        self.model_id = model_id or self.source_path.stem + (f"+{self.adapter_path.stem}" if self.adapter_path else "")
        self.label_bias = dict(label_bias) if label_bias else None
        if not 0.0 <= lexical_weight <= 1.0:
            raise ConfigError(f"lexical_weight must be within [0, 1], not {lexical_weight!r}",
                              hint="0 rates with the student alone; the manifest records the fitted weight")
        self.lexical_weight = float(lexical_weight) if lexical_path else 0.0
        self.lexical = (LexicalPrior.load(lexical_path, lexical_sha256)
                        if lexical_path and self.lexical_weight > 0 else None)
        self._llm = self._load(n_ctx, lora_scale)
        self._explainer = None  # opened on the first explanation (bot.explainer)
        self.explain_problem = ""  # why this rater explains nothing, once it found out (the app reports it)
        # llama.cpp may round the context up; Llama's own token buffer keeps the requested size
        self.n_ctx = min(self._llm.n_ctx(), len(self._llm.input_ids))
        self._n_vocab = self._llm.n_vocab()
        self._label_tokens = self._tokenize_labels()
        extra = [len(seq) - 1 for seq in self._label_tokens.values()]
        self._label_room = max(extra) + 1  # tokens appended after the prompt while scoring

    # -- loading -------------------------------------------------------------------------------

    def _load(self, n_ctx: int, lora_scale: float):  # -> llama_cpp.Llama
        """Load weights (+adapter) quietly; any llama.cpp failure becomes a ModelError."""
        from llama_cpp import Llama  # local: importing bot.rater must not require the native library

        candidates = [self.weights_path] + ([self.source_path] if self.weights_path != self.source_path else [])
        for path in candidates:
            try:
                with quiet_native():
                    llm = Llama(str(path), n_ctx=n_ctx, n_batch=min(512, n_ctx), n_threads=self.n_threads,
                                n_threads_batch=self.n_threads, verbose=False, lora_scale=lora_scale,
                                lora_path=str(self.adapter_path) if self.adapter_path else None)
                # llama-cpp-python 0.3.36 keeps going with a NULL adapter when llama.cpp rejects the file
                # (it tests the ctypes pointer against None), so check the pointer ourselves.
                if self.adapter_path and not llm._lora_adapter:
                    llm.close()
                    raise RuntimeError("LoRA adapter rejected by llama.cpp")
                return llm
            except (ValueError, RuntimeError, OSError) as exc:
                reason = str(exc)
                if path != self.source_path:
                    log.warning("could not load cached copy %s (%s); trying the source", path, reason)
        if self.adapter_path and "LoRA" in reason:
            raise ModelError(f"could not apply LoRA adapter {self.adapter_path} to {self.source_path.name}",
                             hint="the adapter must be a GGUF LoRA exported for this exact base model")
        raise ModelError(f"could not load model {self.source_path}: {reason}",
                         hint="the file is corrupt, truncated or of an unsupported architecture; "
                              "re-download or re-export it")

    def close(self) -> None:
        """Free the model and its context now rather than at garbage collection."""
        explainer, self._explainer = self._explainer, None
        if explainer is not None:
            explainer.close()
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    def _tokenize(self, text: str, bos: bool) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)

    def _tokenize_labels(self) -> dict[str, list[int]]:
        """Each label's tokens *as they follow the answer prefix* (merges can differ from the bare word)."""
        head = self._tokenize(ANSWER_PREFIX, False)
        seqs: dict[str, list[int]] = {}
        for label in LABELS:
            joint = self._tokenize(ANSWER_PREFIX + label, False)
            seqs[label] = joint[len(head):] if joint[:len(head)] == head else self._tokenize(label, False)
            if not seqs[label]:
                raise ModelError(f"the model's tokenizer yields no tokens for label {label!r}",
                                 hint="use a model with a normal text vocabulary")
        return seqs

    # -- prompt fitting ------------------------------------------------------------------------

    def _fit(self, code: str, review: str, origin: str = "") -> tuple[PromptParts, list[int], bool]:
        """Render and tokenize; cut code, then review, further until the prompt fits ``n_ctx``."""
        budget = self.n_ctx - self._label_room
        for review_cap in _REVIEW_CUTS:
            for code_cap in self._code_cuts:
                cut_code, code_cut = truncate_code(code, code_cap) if code_cap else ("", bool(code))
                cut_review, review_cut = truncate_review(review, review_cap, self.prompt_version)
                parts = render(cut_code, cut_review, self.template, origin, self.prompt_version)
                tokens = self._tokenize(parts.text, True)
                if len(tokens) <= budget:
                    truncated = parts.truncated or code_cut or review_cut
                    return parts, tokens, truncated
        raise ModelError(f"the task prompt does not fit a context of {self.n_ctx} tokens even without the input",
                         hint="raise rater.llamacpp.n_ctx (2048 is enough for the packaged model)")

    # -- evaluation ----------------------------------------------------------------------------

    def _common_prefix(self, tokens: list[int]) -> int:
        """How many leading tokens of ``tokens`` are already in the KV cache (at most all but one)."""
        cached = self._llm.input_ids[: self._llm.n_tokens]
        n = min(len(cached), len(tokens) - 1)
        if n <= 0:
            return 0
        diff = np.nonzero(cached[:n] != np.asarray(tokens[:n], dtype=cached.dtype))[0]
        return int(diff[0]) if diff.size else n

    def _decode(self, tokens: list[int], start: int, want: set[int]) -> dict[int, np.ndarray]:
        """Evaluate ``tokens`` at positions ``start…``; return log-softmax rows at absolute positions ``want``.

        The KV cache is first cut back to ``start`` (whatever followed belongs to an earlier prompt).
        Llama's own bookkeeping (``input_ids``/``n_tokens``) is kept in step so its methods stay usable.
        """
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, start, -1)
        llm.n_tokens = start
        rows: dict[int, np.ndarray] = {}
        step = llm.n_batch
        for offset in range(0, len(tokens), step):
            chunk = tokens[offset: offset + step]
            batch = llm._batch.batch
            batch.n_tokens = len(chunk)
            first = start + offset
            for j, token in enumerate(chunk):
                batch.token[j] = token
                batch.pos[j] = first + j
                batch.seq_id[j][0] = 0
                batch.n_seq_id[j] = 1
                batch.logits[j] = (first + j) in want
            llm._ctx.decode(llm._batch)
            llm.input_ids[first: first + len(chunk)] = chunk
            llm.n_tokens = first + len(chunk)
            for j in range(len(chunk)):
                if first + j in want:
                    raw = np.ctypeslib.as_array(llm._ctx.get_logits_ith(j), shape=(self._n_vocab,))
                    rows[first + j] = _log_softmax(raw.astype(np.float64))
        return rows

    def _score(self, tokens: list[int]) -> tuple[dict[str, float], int]:
        """Sequence log-probability of each label after ``tokens``, and how many tokens were evaluated."""
        end = len(tokens)
        answer_at = end - 1
        common = self._common_prefix(tokens)
        multi = [label for label in LABELS if len(self._label_tokens[label]) > 1]
        ride = multi[0] if multi else None  # scored in the same batch as the finding
        ride_inner = self._label_tokens[ride][:-1] if ride else []
        want = {answer_at} | {end + k for k in range(len(ride_inner))}
        rows = self._decode(tokens[common:] + ride_inner, common, want)
        evaluated = end - common + len(ride_inner)
        scores = {label: self._sequence_logprob(rows, answer_at, end, label)
                  for label in LABELS if len(self._label_tokens[label]) == 1 or label == ride}
        for label in multi[1:]:  # other multi-token labels: one more short decode each, after the prompt
            inner = self._label_tokens[label][:-1]
            rows.update(self._decode(inner, end, {end + k for k in range(len(inner))}))
            evaluated += len(inner)
            scores[label] = self._sequence_logprob(rows, answer_at, end, label)
        return scores, evaluated

    def _sequence_logprob(self, rows: dict[int, np.ndarray], answer_at: int, end: int, label: str) -> float:
        """log P(label tokens | prompt): first token at the answer position, the rest after the prompt."""
        seq = self._label_tokens[label]
        return float(rows[answer_at][seq[0]]) + sum(float(rows[end + k][seq[k + 1]]) for k in range(len(seq) - 1))

    # -- public API ----------------------------------------------------------------------------

    def rate_texts(self, pairs: Sequence[tuple[str, ...]]) -> list[Rating]:
        """Rate raw ``(code, review)`` pairs or ``(code, review, origin)`` triples, reusing the KV cache."""
        if self._llm is None:
            raise ModelError("this rater was closed", hint="create a new rater")
        ratings: list[Rating] = []
        for item in pairs:
            code, review, origin = (tuple(item) + ("",))[:3]
            _, tokens, truncated = self._fit(code, review, origin)
            try:
                scores, evaluated = self._score(tokens)
            except RuntimeError as exc:  # llama_decode failed: out of KV space or a broken model
                raise ModelError(f"llama.cpp could not evaluate a prompt of {len(tokens)} tokens: {exc}",
                                 hint="lower the input size or raise rater.llamacpp.n_ctx") from None
            if self.label_bias:
                scores = {label: scores[label] + self.label_bias.get(label, 0.0) for label in scores}
            if self.lexical is not None:
                prior = self.lexical.probabilities(expert_text(review, origin, self.prompt_version))
                scores = combine(scores, prior, self.lexical_weight)
            ratings.append(make_rating(scores, model_id=self.model_id, truncated=truncated, tokens=evaluated,
                                       prompt_version=self.prompt_version))
        return ratings

    def rate(self, findings: Sequence[Finding]) -> list[Rating]:
        """One rating per finding, in order."""
        return self.rate_texts([(finding.code, finding.review, finding.origin()) for finding in findings])

    @property
    def llama(self):  # -> llama_cpp.Llama
        """The underlying llama_cpp.Llama (benchmarks compare against its plain generation path)."""
        return self._llm

    def prompt_tokens(self, code: str, review: str, origin: str = "") -> tuple[list[int], bool]:
        """The exact token ids the model reads for one input (after any cut), and whether it was cut."""
        _, tokens, truncated = self._fit(code, review, origin)
        return tokens, truncated

    def special_token_ids(self) -> set[int]:
        """Ids of the chat-control tokens of the template in use (what untrusted text must never produce)."""
        markers = [part.split("{")[0] for part in TEMPLATES[self.template].values()] + ["<|endoftext|>"]
        ids: set[int] = set()
        for marker in markers:
            for token in self._tokenize(marker, False):
                if self._llm.detokenize([token], special=False) == b"":
                    ids.add(token)
        return ids

    def reset_cache(self) -> None:
        """Forget the KV cache, so the next rating is a cold run (used to check prefix reuse)."""
        self._llm.n_tokens = 0
        self._llm._ctx.kv_cache_clear()

    def explain(self, finding: Finding, rating: Rating, max_tokens: int = 48) -> str:
        """One checked sentence for one rated finding ("" when there is none worth showing)."""
        return self.explain_many([finding], [rating])[0] if max_tokens > 0 else ""

    def explain_many(self, findings: Sequence[Finding], ratings: Sequence[Rating]) -> list[str]:
        """One checked sentence per posted finding, decoded together (:mod:`bot.explainer`); "" for any the
        explainer could not explain. A missing or broken explainer leaves every comment without one, and
        :attr:`explain_problem` says why."""
        if not findings:
            return []
        try:
            if self._explainer is None:
                self._explainer = self._open_explainer()
            return self._explainer.explain(requests_for(findings, ratings))
        except (RuntimeError, ValueError, ModelError, UnicodeError) as exc:
            if self._explainer is None:  # recorded once per rater; later calls skip straight to ""
                self.explain_problem = str(exc)
                log.info("explanations left out: %s", exc)
                self._explainer = _NO_EXPLAINER
            return [""] * len(findings)

    def _open_explainer(self):  # -> bot.explainer.Explainer
        """The explanation adapter beside this student's rating adapter (``explain/``), verified. A student
        without one explains nothing: an untrained base's sentences are not worth a reviewer's time."""
        from bot.explainer import Explainer, explainer_adapter, explainer_folder
        from bot.rater.locate import file_sha256

        folder = explainer_folder(self.adapter_path)
        if folder is None:
            raise ModelError(f"the student {self.model_id} has no explainer (an explain/ folder beside its adapter)",
                             hint="train one with `python -m training.explain_train` (docs/explanations.md)")
        return Explainer(self._llm, explainer_adapter(folder, file_sha256(self.source_path)),
                         n_threads=self.n_threads)
