"""One frozen Config from ``.sieve.toml``, ``SIEVE_*`` environment variables and command-line flags.

Precedence: flags > environment > file > defaults. Built once in cli.py and passed down explicitly;
nothing reads settings globally. Secrets (tokens, API keys) are never stored here: only the *names*
of the environment variables that hold them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from bot.errors import ConfigError
from bot.severity import Severity, parse_severity


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class Config:
    threshold: Severity = _help("lowest severity that is posted as an inline comment", Severity.MINOR)
    threshold_mode: str = _help("'mass' posts when P(severity ≥ threshold) ≥ mass_cutoff; 'argmax' uses the top label",
                                "mass")
    mass_cutoff: float = _help("probability mass needed in 'mass' mode", 0.5)
    fail_on: Severity | None = _help("exit 1 (and a failing status) when a posted finding is at least this severe", None)
    max_comments: int = _help("inline comments per merge request; the rest are listed in the summary", 25)
    max_findings: int = _help("findings rated per run (huge PRs); the rest are reported as skipped", 300)
    max_diff_bytes: int = _help("diffs larger than this are refused with a clear message", 50_000_000)
    reviewers: tuple[str, ...] = _help("reviewers to run: ruff, sarif, llm, local", ("ruff",))
    sarif: tuple[str, ...] = _help("SARIF files for the sarif reviewer", ())
    ignore: tuple[str, ...] = _help("glob patterns of paths never reviewed", ())
    model: str = _help("student model: a name in models/, a folder with manifest.json, or 'base'", "default")
    models_dir: str = _help("where named models live (default: the models/ folder shipped with Sieve)", "")
    rater: str = _help("rater backend: llamacpp (local) or openai (completions endpoint with logprobs)", "llamacpp")
    rater_base_url: str = _help("base URL of the completions endpoint for the openai rater", "")
    rater_model: str = _help("model name at the completions endpoint", "")
    weight_format: str = _help("llamacpp weights: auto (fastest for this CPU), f16 or as-is", "auto")
    lexical: bool = _help("combine the student with its model's lexical prior, when the model has one "
                          "(false: the student alone)", True)
    # off by default: the packaged 135M student's sentences read as nonsense (it is trained on labels only)
    explain: bool = _help("generate a short explanation for each posted finding (--explain)", False)
    llm_base_url: str = _help("OpenAI-compatible chat endpoint for the llm reviewer", "")
    llm_model: str = _help("model name for the llm reviewer", "")
    llm_api_key_env: str = _help("environment variable holding the endpoint's API key", "SIEVE_LLM_API_KEY")
    github_url: str = _help("GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)", "https://api.github.com")
    gitlab_url: str = _help("GitLab instance URL", "https://gitlab.com")
    db: str = _help("feedback store (SQLite file)", "sieve-feedback.db")
    timeout: float = _help("seconds before an HTTP call is abandoned and retried", 30.0)
    allow_reviewer_failure: bool = _help("let a run pass although a reviewer or the rater failed (the summary "
                                         "still says so)", False)


_SEVERITY_KEYS = {"threshold", "fail_on"}
_TUPLE_KEYS = {"reviewers", "sarif", "ignore"}


def _coerce(name: str, value: Any) -> Any:
    """Turn file/env/flag values into the field's type, with a clear error."""
    kind = {f.name: f.type for f in fields(Config)}[name]
    try:
        if name in _SEVERITY_KEYS:
            return None if value in (None, "", "none", "off") else parse_severity(value)
        if name in _TUPLE_KEYS:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return str(value).strip().lower() in ("1", "true", "yes", "on")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"config key {name!r} has an invalid value {value!r}", hint=f"expected {kind}") from None


def _check(config: Config) -> Config:
    if config.threshold_mode not in ("mass", "argmax"):
        raise ConfigError(f"threshold_mode must be 'mass' or 'argmax', not {config.threshold_mode!r}")
    if not 0.0 < config.mass_cutoff <= 1.0:
        raise ConfigError(f"mass_cutoff must be in (0, 1], not {config.mass_cutoff}")
    if config.max_comments < 0 or config.max_findings < 1:
        raise ConfigError("max_comments must be ≥ 0 and max_findings ≥ 1")
    return config


def from_mapping(values: Mapping[str, Any], base: Config | None = None, origin: str = "config") -> Config:
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {origin}: {', '.join(unknown)}",
                          hint=f"known keys: {', '.join(sorted(known))}")
    changes = {k: _coerce(k, v) for k, v in values.items() if v is not None}
    return _check(replace(base or Config(), **changes))


def load_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return dict(data.get("sieve", data))


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SIEVE_THRESHOLD=major`` → {"threshold": "major"}; only keys of Config are read."""
    known = {f.name for f in fields(Config)}
    out = {}
    for key, value in environ.items():
        if key.startswith("SIEVE_"):
            name = key[6:].lower()
            if name in known:
                out[name] = value
    return out


def build(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
          config_path: str | None = None, cwd: Path | None = None) -> Config:
    """Defaults ← .sieve.toml ← SIEVE_* ← flags."""
    environ = os.environ if environ is None else environ
    config = Config()
    path = Path(config_path) if config_path else (cwd or Path.cwd()) / ".sieve.toml"
    if config_path or path.exists():
        config = from_mapping(load_file(path), config, origin=str(path))
    config = from_mapping(from_env(environ), config, origin="SIEVE_* environment variables")
    return from_mapping({k: v for k, v in flags.items() if v is not None}, config, origin="command-line flags")
