"""The settings tables of the raters, ``[rater.llamacpp]`` and ``[rater.openai]``: one frozen options class each.

The student (prompt version, template, code budget, label bias, lexical prior) comes from the model's manifest,
not from here, whichever backend serves it; these are the knobs of the backend itself. Kept free of llama.cpp
and openai imports so settings can be checked cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.registry import check_url, require


def _opt(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class LlamaCppOptions:
    weight_format: str = _opt("auto", "auto (fastest for this CPU), f16, as-is, or the adapter merged into the base: "
                                      "merged-f16, merged-q8 (needs the gguf package)")
    n_threads: int | None = _opt(None, "CPU threads; default llama.cpp's choice")
    n_ctx: int = _opt(2048, "context window in tokens")
    batch: int = _opt(1, "findings evaluated together in one decode call, sharing the cached prefix")
    #: the rater serves the student named by ``model`` (its manifest gives base, adapter, prompt and prior)
    loads_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require(self.weight_format in ("auto", "f16", "as-is", "merged-f16", "merged-q8"),
                "rater.llamacpp.weight_format", self.weight_format, "one of auto, f16, as-is, merged-f16, merged-q8")
        require(self.n_threads is None or self.n_threads >= 1, "rater.llamacpp.n_threads", self.n_threads,
                "a whole number ≥ 1 (or left out)")
        require(self.n_ctx >= 256, "rater.llamacpp.n_ctx", self.n_ctx, "a whole number ≥ 256")
        require(1 <= self.batch <= 64, "rater.llamacpp.batch", self.batch, "a whole number from 1 to 64")

    def rater_kwargs(self) -> dict[str, Any]:
        return {"weight_format": self.weight_format, "n_threads": self.n_threads, "n_ctx": self.n_ctx,
                "batch": self.batch}


@dataclass(frozen=True)
class OpenAIRaterOptions:
    base_url: str = _opt("", "completions endpoint with logprobs (vLLM, llama.cpp server, NIM), ending in /v1")
    model: str = _opt("", "the student's name at that endpoint (default: the name of --model, e.g. default)")
    api_key_env: str = _opt("SIEVE_LLM_API_KEY", "environment variable holding the endpoint's API key")
    timeout: float = _opt(60.0, "seconds to wait for one answer")
    mode: str = _opt("auto", "auto, bias (force each label with logit_bias), top (read the top logprobs) or echo "
                             "(score each label with echo=true)")
    n_ctx: int = _opt(2048, "the server's context window in tokens, when it does not say (prompts are cut to it)")
    #: the server serves the weights; the student named by ``model`` (prompt, template, bias, prior) is applied here
    loads_model: ClassVar[bool] = True
    inherit: ClassVar[dict[str, str]] = {"timeout": "timeout"}
    required: ClassVar[tuple[str, ...]] = ("base_url",)
    required_hint: ClassVar[str] = "pass --rater-base-url URL (or give the [rater.openai] table its base_url)"

    def __post_init__(self) -> None:
        if self.base_url:
            check_url("rater.openai.base_url", self.base_url)
        require(self.timeout > 0, "rater.openai.timeout", self.timeout, "a number of seconds > 0")
        require(self.mode in ("auto", "bias", "top", "echo"), "rater.openai.mode", self.mode,
                "auto, bias, top or echo")
        require(self.n_ctx >= 256, "rater.openai.n_ctx", self.n_ctx, "a whole number ≥ 256")

    def rater_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env,
                "timeout": self.timeout, "mode": self.mode, "n_ctx": self.n_ctx}
