"""A SmolLM2 student folder with a stand-in explainer beside its adapter, made for a test.

A copy of ``models/smollm2-student`` whose ``explain/`` holds a real GGUF LoRA adapter for the same base (the
student's own adapter file) and a manifest written by ``training.explain_train``: it loads and generates through
llama.cpp exactly as a trained explainer does; what it writes is not worth keeping, which the checks catch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def student_with_explainer(folder: Path) -> Path:
    from training.explain_train import ExplainConfig, write_manifest

    shutil.copytree(ROOT / "models" / "smollm2-student", folder)
    (folder / "explain").mkdir()
    adapter = folder / "explain" / "adapter.gguf"
    shutil.copyfile(folder / "adapter.gguf", adapter)
    write_manifest(folder / "explain", config=ExplainConfig(base="smollm2"), adapter=adapter, data_hash="",
                   run={}, metrics={}, command="tests/students.py")
    return folder
