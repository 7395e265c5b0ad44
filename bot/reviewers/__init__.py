"""Reviewers: each turns a parsed diff into findings on added lines.

Importing this package registers the built-in reviewers in :data:`REVIEWERS` by name ("ruff",
"sarif", "llm", "local"); ``REVIEWERS.create(name, config)`` builds one. Heavy dependencies (the
``openai`` SDK, llama.cpp) are imported only when a reviewer first needs them.
"""

from bot.reviewers.base import REVIEWERS, ReviewContext, Reviewer, register_reviewer
from bot.reviewers.llm import LLMConfig, LLMReviewer
from bot.reviewers.local import LocalConfig, LocalReviewer
from bot.reviewers.ruff import RuffConfig, RuffReviewer
from bot.reviewers.sarif import SarifConfig, SarifReviewer

__all__ = [
           "REVIEWERS",
           "LLMConfig",
           "LLMReviewer",
           "LocalConfig",
           "LocalReviewer",
           "ReviewContext",
           "Reviewer",
           "RuffConfig",
           "RuffReviewer",
           "SarifConfig",
           "SarifReviewer",
           "register_reviewer",
]
