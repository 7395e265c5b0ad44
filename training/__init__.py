"""Training side of Sieve: examples, teacher, exam, curriculum, LoRA fine-tuning and GGUF export.

Heavy libraries (torch, transformers, peft, gguf) are imported lazily inside the functions that need
them, so importing this package costs nothing and the bot never depends on it.
"""
