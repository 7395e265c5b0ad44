"""The in-process backend: a GGUF model (plus optional LoRA adapter) run by llama.cpp, and the default rater.

How a prompt is scored (one forward pass, no free generation):

1. The student (:mod:`bot.rater.student`) renders prefix + body + answer; the prompt stops where the label
   begins.
2. The tokens already in the KV cache that match the new prompt (at least the shared instruction
   prefix, evaluated once) are kept; the cache is cut back to that length and only the rest is
   evaluated. Causal attention makes this exact: the kept cells are what a cold run would compute.
3. Logits are requested only at the answer position (and at the inner positions of one multi-token
   label, appended to the same batch: in SmolLM2's vocabulary ``trivial`` is ``tr`` + ``ivial``),
   so every label's whole token sequence is scored without an extra decode call.
4. The student adds its bias and prior and takes the softmax.

Several prompts given together can be evaluated in one decode call as distinct sequences that share the cached
prefix (``batch`` > 1, :mod:`bot.rater.batch`): fewer, larger matrix products for the same arithmetic.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from bot.errors import ModelError
from bot.explain import requests_for, reread
from bot.findings import Finding, Rating
from bot.prompt import ANSWER_PREFIX, MAX_CODE_CHARS, PROMPT_VERSION, TEMPLATES
from bot.rater.locate import (WeightFormat, check_gguf, needs_plain_buffers, packaged_model_path,
                              plain_weight_buffers, quiet_native, resolve_weights)
from bot.rater.student import Scored, Student, StudentRater
from bot.severity import LABELS

log = logging.getLogger(__name__)


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


def log_softmax(row: np.ndarray) -> np.ndarray:
    top = float(row.max())
    return row - (top + float(np.log(np.exp(row - top, dtype=np.float64).sum())))


class _Unavailable:
    """Stands in for an explainer that could not be opened: every finding gets no sentence."""

    def explain(self, requests) -> list[str]:
        return [""] * len(requests)

    def close(self) -> None:
        return None


_NO_EXPLAINER = _Unavailable()


class LlamaCppBackend:
    """Label log-probabilities from a local GGUF model. Deterministic; not thread-safe.

    ``lora_scale`` multiplies the adapter's low-rank update (llama.cpp applies ``W + scale·ΔW``, ΔW
    already carrying the adapter's alpha/r): 1.0 is the adapter as trained, 0.0 the bare base model.
    ``weight_format``: "auto"/"f16" load a cached f16 copy (≈2× faster prefill on AVX-512 CPUs than
    Q4_1), "as-is" the file itself. ``passive_threads`` (default on) stops idle worker threads from
    spinning, which matters on shared CI runners (see :func:`prefer_passive_threads`). ``batch``: how many
    prompts one decode call may evaluate together (1: one after another).
    """

    name = "llamacpp"

    def __init__(self, model_path: str | os.PathLike[str] | None = None,
                 adapter_path: str | os.PathLike[str] | None = None, *, n_ctx: int = 2048,
                 n_threads: int | None = None, weight_format: WeightFormat = "auto", lora_scale: float = 1.0,
                 cache_dir: str | os.PathLike[str] | None = None, passive_threads: bool = True,
                 batch: int = 1) -> None:
        if passive_threads and not prefer_passive_threads():
            log.debug("llama_cpp already loaded; OMP_WAIT_POLICY is whatever it was")
        self.source_path = check_gguf(Path(model_path), "model file") if model_path else packaged_model_path()
        self.adapter_path = check_gguf(Path(adapter_path), "LoRA adapter") if adapter_path else None
        self.n_threads = n_threads or physical_cores()
        self.weights_path = resolve_weights(self.source_path, weight_format, cache=cache_dir,
                                            n_threads=self.n_threads, adapter=self.adapter_path)
        self.batch = max(1, int(batch))
        # a merged copy already carries the adapter: applying it again would count it twice
        adapter = None if self.weights_path.name.endswith(".merged.gguf") else self.adapter_path
        self._llm = self._load(n_ctx, lora_scale, adapter)
        # llama.cpp may round the context up; Llama's own token buffer keeps the requested size
        self.n_ctx = min(self._llm.n_ctx(), len(self._llm.input_ids))
        self._n_vocab = self._llm.n_vocab()
        self.label_tokens = self._tokenize_labels()
        self._label_room = max(len(seq) for seq in self.label_tokens.values())  # tokens scored after a prompt
        self._memo: dict[str, list[int]] = {}
        self._batcher = None

    def _load(self, n_ctx: int, lora_scale: float, adapter: Path | None):  # -> llama_cpp.Llama
        """Load weights (+adapter) quietly; any llama.cpp failure becomes a ModelError."""
        from llama_cpp import Llama  # local: importing bot.rater must not require the native library

        candidates = [self.weights_path] + ([self.source_path] if self.weights_path != self.source_path else [])
        for path in candidates:
            if path == self.source_path:
                adapter = self.adapter_path
            try:
                buffers = plain_weight_buffers() if needs_plain_buffers(path) else contextlib.nullcontext()
                with quiet_native(), buffers:
                    llm = Llama(str(path), n_ctx=n_ctx, n_batch=min(512, n_ctx), n_threads=self.n_threads,
                                n_threads_batch=self.n_threads, verbose=False, lora_scale=lora_scale,
                                lora_path=str(adapter) if adapter else None)
                # llama-cpp-python 0.3.36 keeps going with a NULL adapter when llama.cpp rejects the file
                # (it tests the ctypes pointer against None), so check the pointer ourselves.
                if adapter and not llm._lora_adapter:
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

    def check(self, student: Student) -> None:
        """Every student with a GGUF base (and GGUF adapter) is served; the files were checked on loading."""
        if self._llm is None:
            raise ModelError("this rater was closed", hint="create a new rater")

    def close(self) -> None:
        """Free the model and its context now rather than at garbage collection."""
        llm, self._llm = self._llm, None
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        if llm is not None:
            llm.close()

    @property
    def llama(self):  # -> llama_cpp.Llama
        return self._llm

    # -- tokens --------------------------------------------------------------------------------

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)

    def _tokenize_labels(self) -> dict[str, list[int]]:
        """Each label's tokens *as they follow the answer prefix* (merges can differ from the bare word)."""
        head = self.tokenize(ANSWER_PREFIX, False)
        seqs: dict[str, list[int]] = {}
        for label in LABELS:
            joint = self.tokenize(ANSWER_PREFIX + label, False)
            seqs[label] = joint[len(head):] if joint[:len(head)] == head else self.tokenize(label, False)
            if not seqs[label]:
                raise ModelError(f"the model's tokenizer yields no tokens for label {label!r}",
                                 hint="use a model with a normal text vocabulary")
        return seqs

    def prompt_tokens(self, text: str) -> list[int]:
        """The token ids of a rendered prompt (remembered for the score call that follows a fit)."""
        tokens = self._memo.get(text)
        if tokens is None:
            if len(self._memo) > 256:
                self._memo.clear()
            tokens = self._memo[text] = self.tokenize(text, True)
        return tokens

    def fits(self, text: str) -> bool:
        if self._llm is None:
            raise ModelError("this rater was closed", hint="create a new rater")
        if len(text.encode("utf-8")) + 1 + self._label_room <= self.n_ctx:
            return True  # a token spans at least one byte (BOS aside): no need to count
        return len(self.prompt_tokens(text)) + self._label_room <= self.n_ctx

    # -- evaluation ----------------------------------------------------------------------------

    def common_prefix(self, tokens: list[int]) -> int:
        """How many leading tokens of ``tokens`` are already in the KV cache (at most all but one)."""
        cached = self._llm.input_ids[: self._llm.n_tokens]
        n = min(len(cached), len(tokens) - 1)
        if n <= 0:
            return 0
        diff = np.nonzero(cached[:n] != np.asarray(tokens[:n], dtype=cached.dtype))[0]
        return int(diff[0]) if diff.size else n

    def decode(self, tokens: list[int], start: int, want: set[int]) -> dict[int, np.ndarray]:
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
                    rows[first + j] = self.row(j)
        return rows

    def row(self, index: int) -> np.ndarray:
        """Log-softmax of the logits at output ``index`` of the last decode call."""
        raw = np.ctypeslib.as_array(self._llm._ctx.get_logits_ith(index), shape=(self._n_vocab,))
        return log_softmax(raw.astype(np.float64))

    def score(self, prompts: Sequence[str]) -> list[Scored]:
        if self._llm is None:
            raise ModelError("this rater was closed", hint="create a new rater")
        token_lists = [self.prompt_tokens(text) for text in prompts]
        self._memo.clear()
        try:
            if self.batch > 1 and len(token_lists) > 1:
                return self._batched().score(token_lists)
            return [self._score_one(tokens) for tokens in token_lists]
        except RuntimeError as exc:  # llama_decode failed: out of KV space or a broken model
            longest = max(len(tokens) for tokens in token_lists)
            raise ModelError(f"llama.cpp could not evaluate a prompt of {longest} tokens: {exc}",
                             hint="lower the input size or raise rater.llamacpp.n_ctx") from None

    def _batched(self):  # -> bot.rater.batch.Batcher
        if self._batcher is None:
            from bot.rater.batch import Batcher

            self._batcher = Batcher(self, self.batch)
        return self._batcher

    def _score_one(self, tokens: list[int]) -> Scored:
        """Sequence log-probability of each label after ``tokens``, and how many tokens were evaluated."""
        end = len(tokens)
        answer_at = end - 1
        common = self.common_prefix(tokens)
        multi = [label for label in LABELS if len(self.label_tokens[label]) > 1]
        ride = multi[0] if multi else None  # scored in the same batch as the finding
        ride_inner = self.label_tokens[ride][:-1] if ride else []
        want = {answer_at} | {end + k for k in range(len(ride_inner))}
        rows = self.decode(tokens[common:] + ride_inner, common, want)
        evaluated = end - common + len(ride_inner)
        scores = {label: self.sequence_logprob(rows, answer_at, end, label)
                  for label in LABELS if len(self.label_tokens[label]) == 1 or label == ride}
        for label in multi[1:]:  # other multi-token labels: one more short decode each, after the prompt
            inner = self.label_tokens[label][:-1]
            rows.update(self.decode(inner, end, {end + k for k in range(len(inner))}))
            evaluated += len(inner)
            scores[label] = self.sequence_logprob(rows, answer_at, end, label)
        return Scored(scores, evaluated)

    def sequence_logprob(self, rows: Mapping[int, np.ndarray], answer_at: int, end: int, label: str) -> float:
        """log P(label tokens | prompt): first token at the answer position, the rest after the prompt."""
        seq = self.label_tokens[label]
        return float(rows[answer_at][seq[0]]) + sum(float(rows[end + k][seq[k + 1]]) for k in range(len(seq) - 1))

    def reset_cache(self) -> None:
        """Forget the KV cache, so the next rating is a cold run (used to check prefix reuse)."""
        self._llm.n_tokens = 0
        self._llm._ctx.kv_cache_clear()

    # -- explanations --------------------------------------------------------------------------

    def generate(self, prompt: str, max_tokens: int) -> str:
        """Greedy decoding until end of turn, a newline after some text, or ``max_tokens`` tokens."""
        import llama_cpp

        if self._llm is None:
            return ""
        tokens = self.tokenize(prompt, True)
        budget = min(max_tokens, self.n_ctx - len(tokens))
        if budget <= 0:
            return ""
        vocab = self._llm._model.vocab
        common = self.common_prefix(tokens)
        row = self.decode(tokens[common:], common, {len(tokens) - 1})[len(tokens) - 1]
        out: list[int] = []
        position = len(tokens)
        for _ in range(budget):
            token = int(np.argmax(row))
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            out.append(token)
            text = self._llm.detokenize(out, prev_tokens=tokens)
            if b"\n" in text.lstrip():  # leading blank lines are the model closing the JSON line
                break
            row = self.decode([token], position, {position})[position]
            position += 1
        return self._llm.detokenize(out, prev_tokens=tokens).decode("utf-8", errors="replace")

    def special_token_ids(self, template: str) -> set[int]:
        """Ids of the chat-control tokens of ``template`` (what untrusted text must never produce)."""
        markers = [part.split("{")[0] for part in TEMPLATES[template].values()] + ["<|endoftext|>"]
        ids: set[int] = set()
        for marker in markers:
            for token in self.tokenize(marker, False):
                if self._llm.detokenize([token], special=False) == b"":
                    ids.add(token)
        return ids


class LlamaCppRater(StudentRater):
    """A student rated in-process: :class:`Student` (from the manifest's options) + :class:`LlamaCppBackend`.

    Takes the options :meth:`bot.models.ModelInfo.rater_options` returns plus the backend's own (weights,
    threads, context, ``batch``). ``label_bias`` adds a fixed offset per label to the scores before the
    softmax; ``lexical_path`` + ``lexical_weight`` combine each rating with a lexical prior over the review
    text (:mod:`bot.rater.lexical`; weight 0 leaves the student alone); ``lexical_sha256``, when given, must
    match the prior's bytes.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None,
                 adapter_path: str | os.PathLike[str] | None = None, *, n_ctx: int = 2048,
                 n_threads: int | None = None, template: str = "chatml", model_id: str | None = None,
                 weight_format: WeightFormat = "auto", lora_scale: float = 1.0,
                 cache_dir: str | os.PathLike[str] | None = None, passive_threads: bool = True,
                 label_bias: Mapping[str, float] | None = None, code_chars: int = MAX_CODE_CHARS,
                 lexical_path: str | os.PathLike[str] | None = None, lexical_weight: float = 0.0,
                 lexical_sha256: str | None = None, lexical_scope: str = "all",
                 prompt_version: str = PROMPT_VERSION, student_name: str = "", batch: int = 1) -> None:
        student = Student.from_options(model_id=model_id or "", template=template, prompt_version=prompt_version,
                                       code_chars=code_chars, label_bias=label_bias, lexical_path=lexical_path,
                                       lexical_weight=lexical_weight, lexical_sha256=lexical_sha256,
                                       lexical_scope=lexical_scope, student_name=student_name)
        backend = LlamaCppBackend(model_path, adapter_path, n_ctx=n_ctx, n_threads=n_threads,
                                  weight_format=weight_format, lora_scale=lora_scale, cache_dir=cache_dir,
                                  passive_threads=passive_threads, batch=batch)
        if not model_id:
            source, adapter = backend.source_path, backend.adapter_path
            model_id = source.stem + (f"+{adapter.stem}" if adapter else "")
            student = replace(student, model_id=model_id)
        super().__init__(student, backend)
        self._explainer = None  # opened on the first explanation (bot.explainer)
        self.explain_problem = ""  # why this rater explains nothing, once it found out (the app reports it)

    # what benchmarks, tests and training read from the in-process rater
    source_path = property(lambda self: self.backend.source_path)
    adapter_path = property(lambda self: self.backend.adapter_path)
    weights_path = property(lambda self: self.backend.weights_path)
    n_threads = property(lambda self: self.backend.n_threads)
    n_ctx = property(lambda self: self.backend.n_ctx)
    llama = property(lambda self: self.backend.llama)
    label_bias = property(lambda self: self.student.label_bias)
    lexical = property(lambda self: self.student.lexical)
    lexical_weight = property(lambda self: self.student.lexical_weight)

    def prompt_tokens(self, code: str, review: str, origin: str = "") -> tuple[list[int], bool]:
        """The exact token ids the model reads for one input (after any cut), and whether it was cut."""
        parts, truncated = self.student.fit(code, review, origin, self.backend.fits)
        return self.backend.prompt_tokens(parts.text), truncated

    def special_token_ids(self) -> set[int]:
        return self.backend.special_token_ids(self.student.template)

    def reset_cache(self) -> None:
        self.backend.reset_cache()

    def close(self) -> None:
        """The explainer's context first (it shares the model's weights), then the model."""
        explainer, self._explainer = self._explainer, None
        if explainer is not None:
            explainer.close()
        self.backend.close()

    # -- explanations (bot.explainer: a second adapter over the weights already loaded) ----------------
    def explain(self, finding: Finding, rating: Rating, max_tokens: int = 48) -> str:  # type: ignore[override]
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
            requests = requests_for(findings, ratings)
            return self._reread(self._explainer.explain(requests), requests)
        except (RuntimeError, ValueError, ModelError, UnicodeError) as exc:
            if self._explainer is None:  # recorded once per rater; later calls skip straight to ""
                self.explain_problem = str(exc)
                log.info("explanations left out: %s", exc)
                self._explainer = _NO_EXPLAINER
            return [""] * len(findings)

    def _reread(self, sentences: list[str], requests) -> list[str]:
        """The sentences this student, re-reading each alone, rates within a level of its finding's rating; ""
        for the others (:func:`bot.explain.reread`, one batch)."""
        return reread(sentences, requests, lambda triples: [r.severity for r in self.rate_texts(triples)])

    def _open_explainer(self):  # -> bot.explainer.Explainer
        """The explanation adapter beside this student's rating adapter (``explain/``), verified. A student
        without one explains nothing: an untrained base's sentences are not worth a reviewer's time. The base's
        sha256 is remembered per (path, size, mtime) as the rater's own check does: re-hashing its 250 MB on
        every review cost ≈ 0.2 s."""
        from bot.explainer import Explainer, explainer_adapter, explainer_folder
        from bot.rater.locate import cache_dir, file_sha256

        folder = explainer_folder(self.adapter_path)
        if folder is None:
            raise ModelError(f"the student {self.model_id} has no explainer (an explain/ folder beside its adapter)",
                             hint="train one with `python -m training.explain_train` (docs/explanations.md)")
        return Explainer(self.backend.llama, explainer_adapter(folder, file_sha256(self.source_path, cache_dir())),
                         n_threads=self.n_threads)
