"""One frozen Config from ``.sieve.toml``, ``SIEVE_*`` environment variables and command-line flags.

Precedence: flags > environment > file > defaults. Built once in cli.py and passed down explicitly;
nothing reads settings globally. Secrets (tokens, API keys) are never stored here: only the *names*
of the environment variables that hold them.

Settings are strict: a value of the wrong type, a number out of range or an unknown key is an error
naming the key and what is expected; nothing is coerced ("flase" is not false, 2.9 is not 2). Text from the
environment and from flags is read as the key's type (``true``/``false``, whole numbers, comma lists); an
empty ``SIEVE_*`` variable counts as not set, an empty flag value is an error.

Besides the top-level keys, components have their own tables, checked against the options class each
one registers (bot/registry.py): ``[reviewers.<name>]`` (llm, ruff, sarif, local), ``[rater.<name>]``
(llamacpp, openai) and one table per host (``[github]``, ``[gitlab]``). Because ``reviewers`` and ``rater``
then are tables, which reviewers run and which rater rates may be written inside them as ``use = [...]`` /
``use = "..."``. This module imports no plug-in: the registries come from the lookup that bot.plugins installs
with :func:`use_registries`.
A few top-level keys are shorthands for table entries (``llm_model`` is ``reviewers.llm.model``); setting
both in one place is an error, and a later layer (environment, flags) overrides either.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot.errors import ConfigError
from bot.registry import is_url, show_value
from bot.severity import LABELS, Severity, parse_severity


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class Config:
    threshold: Severity = _help("lowest severity that is posted as an inline comment", Severity.MINOR)
    threshold_mode: str = _help("'mass' posts when P(severity ≥ threshold) ≥ mass_cutoff; 'argmax' uses the top label",
                                "mass")
    mass_cutoff: float = _help("probability mass needed in 'mass' mode", 0.5)
    fail_on: Severity | None = _help("exit 1 (and a failing status) when a posted finding is at least this severe "
                                     "('none' or 'off': never)", None)
    max_comments: int = _help("inline comments per merge request; the rest are listed in the summary", 25)
    max_findings: int = _help("findings rated per run (huge PRs); the rest are reported as skipped", 300)
    max_diff_bytes: int = _help("diffs larger than this are refused with a clear message", 50_000_000)
    reviewers: tuple[str, ...] = _help("reviewers to run: ruff, sarif, llm, local", ("ruff",))
    allow_reviewer_failure: bool = _help("post what the other reviewers found when one reviewer fails "
                                         "(false: a failing reviewer fails the run)", False)
    sarif: tuple[str, ...] = _help("SARIF files for the sarif reviewer (reviewers.sarif.paths)", ())
    ignore: tuple[str, ...] = _help("glob patterns of paths never reviewed", ())
    model: str = _help("student model: a name in models/, a folder with manifest.json, 'base' (the default "
                       "student's base without adapter) or a packaged base (gemma3-270m, smollm2)", "default")
    models_dir: str = _help("where named models live (default: the models/ folder shipped with Sieve)", "")
    rater: str = _help("rater backend: llamacpp (local) or openai (completions endpoint with logprobs)", "llamacpp")
    rater_base_url: str = _help("base URL of the completions endpoint for the openai rater "
                                "(rater.openai.base_url)", "")
    rater_model: str = _help("model name at the completions endpoint (rater.openai.model)", "")
    weight_format: str = _help("llamacpp weights: auto (fastest for this CPU), f16 or as-is "
                               "(rater.llamacpp.weight_format)", "auto")
    lexical: bool = _help("combine the student with its model's lexical prior, when the model has one "
                          "(false: the student alone)", True)
    # off by default: no shipped student carries an explainer that met its goals (docs/explanations.md)
    explain: bool = _help("generate a short explanation for each posted finding (--explain)", False)
    llm_base_url: str = _help("OpenAI-compatible chat endpoint for the llm reviewer (reviewers.llm.base_url)", "")
    llm_model: str = _help("model name for the llm reviewer (reviewers.llm.model)", "")
    llm_api_key_env: str = _help("environment variable holding the endpoint's API key (reviewers.llm.api_key_env)",
                                 "SIEVE_LLM_API_KEY")
    github_url: str = _help("GitHub API base URL (GitHub Enterprise: https://HOST/api/v3) (github.url)",
                            "https://api.github.com")
    gitlab_url: str = _help("GitLab instance URL (gitlab.url)", "https://gitlab.com")
    db: str = _help("feedback store (SQLite file): written by `sieve feedback collect` / `import`; a review reads "
                    "the team's memory from it when the file exists", "sieve-feedback.db")
    memory: bool = _help("adjust ratings with the team's memory of trusted reactions in the feedback store `db` "
                         "(false: the student's ratings as they are)", True)
    timeout: float = _help("seconds before an HTTP call is abandoned and retried (hosts and the llm reviewer, "
                           "unless their table sets its own)", 30.0)
    tables: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"help": "component tables ([reviewers.llm], [github] …), checked against their options"})

    def table(self, section: str) -> Mapping[str, Any]:
        """The settings given for ``section`` ("reviewers.llm", "github" …); empty when none were."""
        return self.tables.get(section, MappingProxyType({}))

    def options(self, section: str, overrides: Mapping[str, Any] | None = None, *, ready: bool = False) -> Any:
        """The options object of ``section``: its class's defaults ← the top-level settings it inherits (e.g.
        ``timeout``) ← the table's settings ← ``overrides``. With ``ready``, the options the class lists as
        ``required`` must have been given (a ConfigError with the class's ``required_hint`` otherwise)."""
        from bot.registry import parse_options

        cls = options_class(section)
        table = {**self.table(section), **(overrides or {})}
        if ready:
            missing = [key for key in getattr(cls, "required", ()) if key not in table]
            if missing:
                raise ConfigError(f"{section} needs {' and '.join(f'{section}.{key}' for key in missing)}",
                                  hint=getattr(cls, "required_hint", None))
        inherited = {key: getattr(self, top) for key, top in getattr(cls, "inherit", {}).items()}
        return parse_options(cls, {**inherited, **table}, section)

    @property
    def bot_login(self) -> str:
        """``[github] bot_login``: the login whose comments are Sieve's own (empty: ask the host)."""
        return str(self.table("github").get("bot_login", ""))

    @property
    def trusted_users(self) -> tuple[int, ...]:
        """``[github] trusted_users``: numeric ids of the users whose reactions count as trusted feedback."""
        return tuple(self.table("github").get("trusted_users", ()))


SETTINGS = tuple(f.name for f in fields(Config) if f.name != "tables")
_SEVERITY_KEYS = {"threshold", "fail_on"}
_TUPLE_KEYS = {"reviewers", "sarif", "ignore"}
_URL_KEYS = ("github_url", "gitlab_url", "llm_base_url", "rater_base_url")
_CHOICES = {"threshold_mode": ("mass", "argmax"), "weight_format": ("auto", "f16", "as-is", "merged-f16", "merged-q8")}
#: top-level tables whose entries are components of one kind (``[reviewers.llm]``), and the single ones
_KIND_TABLES = ("reviewers", "rater")
#: top-level shorthand → (section, option) of the table entry it stands for
ALIASES = {"llm_base_url": ("reviewers.llm", "base_url"), "llm_model": ("reviewers.llm", "model"),
           "llm_api_key_env": ("reviewers.llm", "api_key_env"), "sarif": ("reviewers.sarif", "paths"),
           "rater_base_url": ("rater.openai", "base_url"), "rater_model": ("rater.openai", "model"),
           "weight_format": ("rater.llamacpp", "weight_format"), "github_url": ("github", "url"),
           "gitlab_url": ("gitlab", "url")}
FLAGS, ENVIRONMENT = "command-line flags", "SIEVE_* environment variables"
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NO_SEVERITY = ("none", "off")


#: kind ("reviewers", "rater", "hosts") → its registry with the plug-ins registered; installed by bot.plugins
_registries: Callable[[str], Any] | None = None


def use_registries(lookup: Callable[[str], Any]) -> None:
    """Where the component registries come from (bot.plugins installs its ``registry`` here on import)."""
    global _registries
    _registries = lookup


def _registry(kind: str) -> Any:
    """The registry of a component kind ("reviewers", "rater", "hosts"), with its plug-ins registered."""
    if _registries is None:
        raise RuntimeError("no component registries: import bot.plugins before building a configuration")
    return _registries(kind)


def _host_tables() -> list[str]:
    """The hosts' table names ([github], [gitlab] …): one per registered host."""
    return _registry("hosts").names()


def _tables_words(last: str = " and ") -> str:
    """The settings tables in words: ``[reviewers.NAME], [rater.NAME], [github] and [gitlab]``."""
    names = ["[reviewers.NAME]", "[rater.NAME]", *(f"[{host}]" for host in _host_tables())]
    return ", ".join(names[:-1]) + last + names[-1]


def options_class(section: str) -> type:
    """The options class registered for ``section`` ("reviewers.llm", "rater.openai", "github" …)."""
    kind, _, name = section.partition(".")
    if not name and kind in _host_tables():
        kind, name = "hosts", section
    elif kind not in _KIND_TABLES or not name:
        raise ConfigError(f"there is no settings table [{section}]", hint=f"tables are {_tables_words()}")
    cls = _registry(kind).options_class(name)
    if cls is None:
        raise ConfigError(f"the {kind} {name!r} takes no settings", hint=f"remove the [{section}] table")
    return cls


def setting_exists(name: str) -> bool:
    """True when ``name`` is a top-level key or ``section.option`` of a registered options class."""
    from bot.registry import describe

    if name in SETTINGS:
        return True
    section, _, option = name.rpartition(".")
    try:
        return option in {key for key, *_ in describe(options_class(section))}
    except ConfigError:
        return False


def _expected(name: str) -> str:
    kind = {f.name: f.type for f in fields(Config)}[name]
    if name in _SEVERITY_KEYS:
        return f"one of {', '.join(LABELS)}" + (" (or 'none')" if name == "fail_on" else "")
    if name in _CHOICES:
        return f"one of {', '.join(_CHOICES[name])}"
    return {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a string"}.get(
        kind, "a list of strings")


def _bad(name: str, value: Any, origin: str) -> ConfigError:
    """``--threshold "x" …`` / ``SIEVE_THRESHOLD="x" …`` / ``setting threshold … in FILE``: what, and what fits."""
    what = "unknown severity" if name in _SEVERITY_KEYS else "not valid"
    expected = _expected(name)
    value = show_value(value)
    if origin == FLAGS:
        return ConfigError(f"{flag_name(name)} {value}: {what}, expected {expected}")
    if origin == ENVIRONMENT:
        return ConfigError(f"SIEVE_{name.upper()}={value}: {what}, expected {expected}",
                           hint=f"fix or unset SIEVE_{name.upper()}")
    return ConfigError(f"setting {name} = {value} in {origin}: {what}, expected {expected}", hint=f"fix {name} there")


def _convert(name: str, value: Any, origin: str, text: bool) -> Any:
    """A file, environment or flag value as the key's type; ``text``: strings are parsed (env, flags)."""
    kind = {f.name: f.type for f in fields(Config)}[name]
    if name in _SEVERITY_KEYS:
        if not isinstance(value, (str, Severity)):
            raise _bad(name, value, origin)
        if name == "fail_on" and str(value).strip().lower() in _NO_SEVERITY:
            return None
        try:
            return parse_severity(value)
        except ConfigError:
            raise _bad(name, value, origin) from None
    if name in _TUPLE_KEYS:
        if text and isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise _bad(name, value, origin)
    if text and isinstance(value, str) and kind != "str":
        value = _parse_text(kind, value.strip())
    ok = {"bool": lambda v: isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
          "str": lambda v: isinstance(v, str)}[kind]
    if not ok(value):
        raise _bad(name, value, origin)
    return float(value) if kind == "float" else value


def _parse_text(kind: str, text: str) -> Any:
    """``"true"`` → True, ``"3"`` → 3, ``"0.5"`` → 0.5; the text itself when it is none of its kind."""
    if kind == "bool":
        low = text.lower()
        return True if low in _TRUE else False if low in _FALSE else text
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        return text


def _out_of_range(name: str, value: Any, expected: str) -> ConfigError:
    also = f" ({'.'.join(ALIASES[name])})" if name in ALIASES else ""
    return ConfigError(f"setting {name}{also} is {show_value(value)}, expected {expected}",
                       hint=f"fix {name} (in .sieve.toml or SIEVE_{name.upper()})")


def _check(config: Config) -> Config:
    for name, choices in _CHOICES.items():
        if getattr(config, name) not in choices:
            raise _out_of_range(name, getattr(config, name), _expected(name))
    if not 0.0 < config.mass_cutoff <= 1.0:
        raise _out_of_range("mass_cutoff", config.mass_cutoff, "a number in (0, 1]")
    for name, low in (("max_comments", 0), ("max_findings", 1), ("max_diff_bytes", 1)):
        if getattr(config, name) < low:
            raise _out_of_range(name, getattr(config, name), f"a whole number ≥ {low}")
    if not config.timeout > 0:
        raise _out_of_range("timeout", config.timeout, "a number of seconds > 0")
    if not config.reviewers:
        raise ConfigError("setting reviewers is empty: nothing would be reviewed",
                          hint="name at least one of ruff, sarif, llm, local")
    for name in config.reviewers:
        _registry("reviewers").check_name(name, "reviewers")
    _registry("rater").check_name(config.rater, "rater")
    for name in _URL_KEYS:
        if getattr(config, name) and not is_url(getattr(config, name)):
            raise _out_of_range(name, getattr(config, name), "an http(s) URL such as https://host/path")
    for name in ("model", "db", "llm_api_key_env"):
        if not getattr(config, name).strip():
            raise _out_of_range(name, getattr(config, name), "a name (leave it out for the default)")
    for section in config.tables:
        config.options(section)  # each table against its component's options class
    return config


def _split_tables(values: Mapping[str, Any], origin: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A file's top level → (top-level keys, {section: table}); ``use`` inside a kind table selects."""
    flat: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    hosts = _host_tables()
    for key, value in values.items():
        if key in hosts and isinstance(value, Mapping):
            tables[key] = dict(value)
        elif key in _KIND_TABLES and isinstance(value, Mapping):
            for name, sub in value.items():
                if name == "use":
                    flat[key] = sub
                elif isinstance(sub, Mapping):
                    _registry(key).check_name(name, f"[{key}.{name}] in {origin}")
                    tables[f"{key}.{name}"] = dict(sub)
                else:
                    raise ConfigError(f"{key}.{name} = {sub!r} in {origin} is neither `use` nor a table",
                                      hint=f"write `use = ...` or a [{key}.{name}] table")
        elif key in hosts:
            raise ConfigError(f"{key} in {origin} must be a table", hint=f"write [{key}] followed by settings")
        else:
            flat[key] = value
    return flat, tables


def from_mapping(values: Mapping[str, Any], base: Config | None = None, origin: str = "config",
                 *, text: bool = True) -> Config:
    """``base`` with ``values`` applied (top-level keys and component tables); strict, see the module doc."""
    flat, new_tables = _split_tables(values, origin)
    unknown = sorted(set(flat) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]} in {origin}",
                          hint=f"known settings: {', '.join(SETTINGS)}; tables: {_tables_words(', ')}")
    changes = {k: _convert(k, v, origin, text) for k, v in flat.items() if v is not None}
    tables = {k: dict(v) for k, v in (base or Config()).tables.items()}
    for section, table in new_tables.items():
        tables.setdefault(section, {}).update(table)
    for key, (section, option) in ALIASES.items():
        in_table = new_tables.get(section, {})
        if key in changes and option in in_table and in_table[option] != changes[key]:
            raise ConfigError(f"{origin} sets both {key} and {section}.{option}", hint="keep one of them")
        if key in changes:
            tables.setdefault(section, {})[option] = changes[key]
        elif option in in_table:
            alias_value = in_table[option]
            changes[key] = tuple(alias_value) if isinstance(alias_value, list) else alias_value
    changes["tables"] = MappingProxyType({k: MappingProxyType(v) for k, v in tables.items()})
    return _check(replace(base or Config(), **changes))


def load_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder", hint="pass --config with a .toml file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if "sieve" not in data:
        return data
    if not isinstance(data["sieve"], dict):
        raise ConfigError(f"sieve = {data['sieve']!r} in {path} is not a table",
                          hint="write the settings under a [sieve] table header (or at the top level)")
    others = sorted(set(data) - {"sieve"})
    if others:
        raise ConfigError(f"{path} has a [sieve] table and also {others[0]} outside it",
                          hint=f"move {others[0]} into the [sieve] table (e.g. [sieve.reviewers.llm])")
    return data["sieve"]


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SIEVE_THRESHOLD=major`` → {"threshold": "major"}; only top-level keys are read, empty ones are unset."""
    out = {}
    for key, value in environ.items():
        if key.startswith("SIEVE_") and key[6:].lower() in SETTINGS and value.strip():
            out[key[6:].lower()] = value
    return out


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def build(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
          config_path: str | None = None, cwd: Path | None = None) -> Config:
    """Defaults ← .sieve.toml ← SIEVE_* ← flags."""
    environ = os.environ if environ is None else environ
    for key, value in flags.items():
        if isinstance(value, str) and not value.strip():
            raise ConfigError(f"{flag_name(key)} was given an empty value",
                              hint=f"give it a value or leave {flag_name(key)} out for the default")
    config = Config()
    path = Path(config_path) if config_path else (cwd or Path.cwd()) / ".sieve.toml"
    if config_path or path.exists():
        config = from_mapping(load_file(path), config, origin=str(path), text=False)
    config = from_mapping(from_env(environ), config, origin=ENVIRONMENT)
    return from_mapping({k: v for k, v in flags.items() if v is not None}, config, origin=FLAGS)
