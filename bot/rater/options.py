"""The settings tables of the raters, ``[rater.llamacpp]`` and ``[rater.openai]``: one frozen options class each.

The model (base, adapter, label bias, lexical prior) comes from the model's manifest, not from here; these are
the knobs of the backend itself. Kept free of llama.cpp and openai imports so settings can be checked cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.registry import check_url, require


def _opt(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class LlamaCppOptions:
    weight_format: str = _opt("auto", "auto (fastest for this CPU), f16 or as-is")
    n_threads: int | None = _opt(None, "CPU threads; default llama.cpp's choice")
    n_ctx: int = _opt(2048, "context window in tokens")
    #: the rater loads the student named by ``model`` (its manifest gives base, adapter and prior)
    loads_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require(self.weight_format in ("auto", "f16", "as-is"), "rater.llamacpp.weight_format", self.weight_format,
                "one of auto, f16, as-is")
        require(self.n_threads is None or self.n_threads >= 1, "rater.llamacpp.n_threads", self.n_threads,
                "a whole number ≥ 1 (or left out)")
        require(self.n_ctx >= 256, "rater.llamacpp.n_ctx", self.n_ctx, "a whole number ≥ 256")

    def rater_kwargs(self) -> dict[str, Any]:
        return {"weight_format": self.weight_format, "n_threads": self.n_threads, "n_ctx": self.n_ctx}


@dataclass(frozen=True)
class OpenAIRaterOptions:
    base_url: str = _opt("", "completions endpoint with logprobs (vLLM, llama.cpp server, NIM), ending in /v1")
    model: str = _opt("", "model name at that endpoint")
    api_key_env: str = _opt("SIEVE_LLM_API_KEY", "environment variable holding the endpoint's API key")
    timeout: float = _opt(60.0, "seconds to wait for one answer")
    mode: str = _opt("top", "top (read the top logprobs) or echo (score each label with echo=true)")
    inherit: ClassVar[dict[str, str]] = {"timeout": "timeout"}
    required: ClassVar[tuple[str, ...]] = ("base_url", "model")
    required_hint: ClassVar[str] = "pass --rater-base-url URL --rater-model NAME (or set them in [rater.openai])"

    def __post_init__(self) -> None:
        if self.base_url:
            check_url("rater.openai.base_url", self.base_url)
        require(self.timeout > 0, "rater.openai.timeout", self.timeout, "a number of seconds > 0")
        require(self.mode in ("top", "echo"), "rater.openai.mode", self.mode, "top or echo")

    def rater_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env,
                "timeout": self.timeout, "mode": self.mode}
