"""Writing the model registry: candidate manifests, and promotion only when the held-out exam improves.

Why a gate: a new adapter is trained on a curriculum that the teacher and the feedback shaped; nothing
guarantees it is better. ``promote`` compares held-out exam figures with the current model's and refuses
otherwise, so ``models/default`` never silently gets worse. Promotion copies into a temporary folder and
renames it into place, so a reader never sees half a model. Training writes only to a models folder the user
names (``--models-dir``, ``SIEVE_MODELS_DIR``) or a source checkout's ``models/``, never into an installed Sieve.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bot.errors import TrainingError
from bot.models import MANIFEST, PACKAGED_BASES, default_root, read_manifest
from bot.prompt import PROMPT_VERSION
from bot.rater.locate import file_sha256, is_installed_copy

_LIBRARIES = ("torch", "transformers", "peft", "gguf", "llama-cpp-python", "scikit-learn", "numpy")


@dataclass
class PromotionRule:
    """How a candidate must compare with the current model on the held-out exam."""

    metric: str = "macro_f1"  # the figure compared (macro-F1 resists a majority-class student)
    min_gain: float = 0.0  # the candidate must beat the current value by more than this
    tie_break: str = "accuracy"  # compared when the main metric is equal


MODELS_DIR_HINT = "name a folder of your own with --models-dir DIR or SIEVE_MODELS_DIR (e.g. models/ in your repository)"


def models_root(explicit: str | os.PathLike[str] | None = None, environ: Any = None) -> Path:
    """The models folder training reads and promotes into: ``explicit`` (``--models-dir``), else
    ``$SIEVE_MODELS_DIR``, else the checkout's ``models/`` when Sieve runs from a source checkout. An installed
    Sieve's own models are never written to: without a folder named, that is an error with the fix."""
    environ = os.environ if environ is None else environ
    chosen = explicit or environ.get("SIEVE_MODELS_DIR")
    root = Path(chosen).expanduser() if chosen else default_root()
    if is_installed_copy(root):
        why = f"{root} is inside the installed Sieve" if chosen else "no models folder was named"
        raise TrainingError(f"training will not write into the installed package's models ({why})",
                            hint=MODELS_DIR_HINT)
    return root


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a model (for reproducing it)."""
    found = {"python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_manifest(folder: Path, *, name: str, base: str, base_path: Path, adapter_file: str | None,
                   data_hash: str = "", hyperparameters: dict[str, Any] | None = None,
                   metrics: dict[str, Any] | None = None, threshold_calibration: dict[str, Any] | None = None,
                   parent: str | None = None, command: str = "", template: str | None = None,
                   code_chars: int | None = None) -> Path:
    """Write ``folder/manifest.json`` for an adapter already placed in ``folder``."""
    folder = Path(folder)
    manifest: dict[str, Any] = {
        "name": name,
        "base": {"name": base if base in PACKAGED_BASES else None, "file": base_path.name,
                 "sha256": file_sha256(base_path)},
        "adapter": ({"file": adapter_file, "sha256": file_sha256(folder / adapter_file)} if adapter_file else None),
        "template": template or PACKAGED_BASES.get(base, "chatml"),
        "prompt_version": PROMPT_VERSION,
        **({} if code_chars is None else {"code_chars": code_chars}),
        "data_hash": data_hash,
        "hyperparameters": hyperparameters or {},
        "metrics": metrics or {},
        "threshold_calibration": threshold_calibration,
        "parent": parent,
        "library_versions": library_versions(),
        "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if manifest["base"]["name"] is None:
        manifest["base"]["file"] = str(base_path.resolve())
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def beats(candidate: dict[str, Any], current: dict[str, Any] | None, rule: PromotionRule | None = None) -> bool:
    """True when the candidate's held-out figures beat the current model's under ``rule``."""
    rule = rule or PromotionRule()
    if not current:
        return True
    if rule.metric not in candidate:
        raise TrainingError(f"candidate metrics lack {rule.metric!r}", hint="evaluate it on the held-out exam first")
    new, old = float(candidate[rule.metric]), float(current.get(rule.metric, float("-inf")))
    if new > old + rule.min_gain:
        return True
    if new == old and rule.tie_break:
        return float(candidate.get(rule.tie_break, 0.0)) > float(current.get(rule.tie_break, 0.0))
    return False


def promote(candidate_dir: Path, name: str, metrics: dict[str, Any], current: dict[str, Any] | None, *,
            root: Path, rule: PromotionRule | None = None) -> bool:
    """Install ``candidate_dir`` as ``root/name`` if ``metrics`` beat ``current`` (both held-out exam figures).

    The candidate folder must hold a manifest; its ``metrics.exam`` is set to ``metrics`` and its ``parent``
    to the model it replaces. Returns False (and changes nothing) when the candidate is not better.
    """
    candidate_dir, root = Path(candidate_dir), Path(root)
    if is_installed_copy(root):
        raise TrainingError(f"will not promote into {root}: it is inside the installed Sieve", hint=MODELS_DIR_HINT)
    if not beats(metrics, current, rule):
        return False
    manifest = read_manifest(candidate_dir)
    target = root / name
    if (target / MANIFEST).is_file():
        old = read_manifest(target)
        manifest["parent"] = f"{name}@{((old.get('adapter') or {}).get('sha256') or '')[:12]}"
    manifest["name"] = name
    manifest.setdefault("metrics", {})["exam"] = metrics
    staging = root / f".{name}.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    lexical = str((manifest.get("lexical") or {}).get("file") or "")
    files = [p for p in candidate_dir.iterdir()
             if p.is_file() and p.name != MANIFEST and (p.suffix == ".gguf" or p.name == lexical)]
    for path in files:
        shutil.copy2(path, staging / path.name)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    retired = root / f".{name}.previous"
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
    return True
