"""Sieve: a merge-request review bot whose severity judgement comes from a small fine-tuned model."""

__version__ = "0.1.0"
