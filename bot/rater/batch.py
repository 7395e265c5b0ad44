"""Several findings per llama.cpp decode call: distinct sequences that share the cached instruction prefix.

One finding at a time, a decode call evaluates the ≈60–130 tokens after the shared prefix: small matrix products
that leave a CPU's vector units partly idle. Here a group of findings is evaluated in one call instead. Sequence
0 holds the prefix every prompt of the group shares; each finding gets its own sequence id, which starts as a copy
of sequence 0 (in llama.cpp's unified KV cache a copy only tags the prefix cells with one more id), and its own
tokens follow at the same positions the one-at-a-time path uses. Attention never crosses sequences, so each
finding's logits are what it would get alone; with flash attention the masked cells of other findings are
skipped rather than computed, so the cost per token stays that of one finding.

The context is a second llama.cpp context on the same loaded weights (with the same adapter), sized for the
group: the single-finding context of :class:`~bot.rater.llamacpp.LlamaCppBackend` stays as it is.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bot.rater.locate import quiet_native
from bot.rater.student import Scored
from bot.severity import LABELS

if TYPE_CHECKING:
    from bot.rater.llamacpp import LlamaCppBackend


def shared_prefix(token_lists: Sequence[list[int]]) -> int:
    """Length of the prefix all lists share, at most all but one token of the shortest."""
    limit = min(len(tokens) for tokens in token_lists) - 1
    first = token_lists[0]
    n = 0
    while n < limit and all(tokens[n] == first[n] for tokens in token_lists):
        n += 1
    return n


class Batcher:
    """Scores groups of up to ``size`` prompts in shared decode calls (see the module docstring)."""

    def __init__(self, backend: LlamaCppBackend, size: int) -> None:
        import llama_cpp
        from llama_cpp import _internals as internals

        llm = backend.llama
        self.backend = backend
        self.size = size
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_seq_max = size + 1
        params.kv_unified = True
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        with quiet_native():
            self.ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
        if llm._lora_adapter:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(llm._lora_adapter)
            scales = (ctypes.c_float * 1)(llm.lora_scale)
            if llama_cpp.llama_set_adapters_lora(self.ctx.ctx, adapters, 1, scales):
                raise RuntimeError("could not apply the LoRA adapter to the batch context")
        self.n_ctx = min(self.ctx.n_ctx(), backend.n_ctx)
        self.n_batch = llm.n_batch
        self._batch = internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=size + 1, verbose=False)
        self._memory = self.ctx.memory
        self.prefix: list[int] = []  # what sequence 0 holds

    def close(self) -> None:
        self._batch.close()
        self.ctx.close()

    def score(self, token_lists: Sequence[list[int]]) -> list[Scored]:
        out: list[Scored] = []
        start = 0
        while start < len(token_lists):
            group = self._group(token_lists, start)
            out += self._score_group(group)
            start += len(group)
        return out

    def _room(self, tokens: list[int]) -> int:
        inner = sum(len(seq) - 1 for seq in self.backend.label_tokens.values())
        return len(tokens) + inner

    def _group(self, token_lists: Sequence[list[int]], start: int) -> list[list[int]]:
        """The next prompts that fit the KV cache together (at least one)."""
        group = [token_lists[start]]
        for tokens in token_lists[start + 1: start + self.size]:
            prefix = shared_prefix(group + [tokens])
            need = prefix + sum(self._room(t) - prefix for t in group + [tokens])
            if need > self.n_ctx:
                break
            group.append(tokens)
        return group

    def _score_group(self, group: list[list[int]]) -> list[Scored]:
        import llama_cpp

        prefix = shared_prefix(group) if len(group) > 1 else max(0, len(group[0]) - 1)
        kept = shared_prefix([self.prefix + [-1], group[0][:prefix] + [-2]]) if self.prefix else 0
        llama_cpp.llama_memory_seq_rm(self._memory, -1, kept, -1)  # every sequence, from ``kept`` on
        for seq in range(1, self.size + 1):
            llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
        self.prefix = group[0][:prefix]
        self._decode([(0, kept, group[0][kept:prefix], set())])
        multi = [label for label in LABELS if len(self.backend.label_tokens[label]) > 1]
        ride = self.backend.label_tokens[multi[0]][:-1] if multi else []
        jobs = []
        for seq, tokens in enumerate(group, start=1):
            llama_cpp.llama_memory_seq_cp(self._memory, 0, seq, -1, -1)
            end = len(tokens)
            jobs.append((seq, prefix, tokens[prefix:] + ride, {end - 1} | {end + k for k in range(len(ride))}))
        rows = self._decode(jobs)
        scores = [{label: self.backend.sequence_logprob(rows[seq], len(t) - 1, len(t), label)
                   for label in LABELS if len(self.backend.label_tokens[label]) == 1 or (multi and label == multi[0])}
                  for seq, t in enumerate(group, start=1)]
        for label in multi[1:]:  # other multi-token labels: one more shared decode after every prompt
            inner = self.backend.label_tokens[label][:-1]
            for seq, t in enumerate(group, start=1):
                llama_cpp.llama_memory_seq_rm(self._memory, seq, len(t), -1)
            more = self._decode([(seq, len(t), inner, {len(t) + k for k in range(len(inner))})
                                 for seq, t in enumerate(group, start=1)])
            for seq, t in enumerate(group, start=1):
                rows[seq].update(more[seq])
                scores[seq - 1][label] = self.backend.sequence_logprob(rows[seq], len(t) - 1, len(t), label)
        spent = [len(t) - prefix + len(ride) + sum(len(self.backend.label_tokens[x]) - 1 for x in multi[1:])
                 for t in group]
        spent[0] += prefix - kept  # the prefix, evaluated once, is counted with the group's first finding
        return [Scored(s, n) for s, n in zip(scores, spent)]

    def _decode(self, jobs: list[tuple[int, int, list[int], set[int]]]) -> dict[int, dict[int, np.ndarray]]:
        """Evaluate each job (sequence, first position, tokens, positions wanted) in as few decode calls as the
        batch size allows; the log-softmax rows wanted, by sequence and position."""
        stream = [(seq, start + i, token, start + i in want)
                  for seq, start, tokens, want in jobs for i, token in enumerate(tokens)]
        rows: dict[int, dict[int, np.ndarray]] = {seq: {} for seq, _, _, _ in jobs}
        for offset in range(0, len(stream), self.n_batch):
            chunk = stream[offset: offset + self.n_batch]
            batch = self._batch.batch
            batch.n_tokens = len(chunk)
            for j, (seq, pos, token, wanted) in enumerate(chunk):
                batch.token[j] = token
                batch.pos[j] = pos
                batch.seq_id[j][0] = seq
                batch.n_seq_id[j] = 1
                batch.logits[j] = wanted
            self.ctx.decode(self._batch)
            for j, (seq, pos, _, wanted) in enumerate(chunk):
                if wanted:
                    rows[seq][pos] = self._row(j)
        return rows

    def _row(self, index: int) -> np.ndarray:
        from bot.rater.llamacpp import log_softmax

        raw = np.ctypeslib.as_array(self.ctx.get_logits_ith(index), shape=(self.backend.llama.n_vocab(),))
        return log_softmax(raw.astype(np.float64))
