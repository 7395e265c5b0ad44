"""Student raters: score the four severity labels for each finding.

``RATERS`` maps names to factories. The built-in ones import their heavy dependencies (llama.cpp,
the openai client) only when created, so ``import bot.rater`` stays cheap.
"""

from __future__ import annotations

from bot.rater.base import RATERS, Rater, clean_explanation, distribution, make_rating
from bot.rater.options import LlamaCppOptions, OpenAIRaterOptions


def _llamacpp(**kwargs: object) -> Rater:
    from bot.rater.llamacpp import LlamaCppRater

    return LlamaCppRater(**kwargs)  # type: ignore[arg-type]


def _openai(**kwargs: object) -> Rater:
    from bot.rater.openai import OpenAIRater

    return OpenAIRater(**kwargs)  # type: ignore[arg-type]


RATERS.add("llamacpp", _llamacpp, LlamaCppOptions)
RATERS.add("openai", _openai, OpenAIRaterOptions)

__all__ = ["RATERS", "Rater", "clean_explanation", "distribution", "make_rating"]
