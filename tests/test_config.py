"""Config precedence (defaults ← file ← env ← flags) and clear errors."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bot import config as cfg
from bot.errors import ConfigError
from bot.severity import Severity


def test_precedence_file_env_flags(tmp_path):
    (tmp_path / ".sieve.toml").write_text('threshold = "trivial"\nmax_comments = 7\nreviewers = ["ruff", "sarif"]\n')
    c = cfg.build({}, environ={}, cwd=tmp_path)
    assert c.threshold is Severity.TRIVIAL and c.max_comments == 7 and c.reviewers == ("ruff", "sarif")
    c = cfg.build({}, environ={"SIEVE_MAX_COMMENTS": "3"}, cwd=tmp_path)
    assert c.max_comments == 3
    c = cfg.build({"max_comments": 1, "threshold": "critical"}, environ={"SIEVE_MAX_COMMENTS": "3"}, cwd=tmp_path)
    assert c.max_comments == 1 and c.threshold is Severity.CRITICAL


def test_unknown_key_is_named(tmp_path):
    (tmp_path / ".sieve.toml").write_text("treshold = 'major'\n")
    with pytest.raises(ConfigError, match="unknown key.*treshold"):
        cfg.build({}, environ={}, cwd=tmp_path)


def test_bad_values_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="--threshold \"severe\": unknown severity, expected one of critical"):
        cfg.build({"threshold": "severe"}, environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="SIEVE_MAX_COMMENTS=\"many\": not valid, expected a whole number"):
        cfg.build({}, environ={"SIEVE_MAX_COMMENTS": "many"}, cwd=tmp_path)
    (tmp_path / "bad.toml").write_text("threshold = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.build({}, environ={}, config_path=str(tmp_path / "bad.toml"))


def test_sieve_table_is_accepted(tmp_path):
    (tmp_path / ".sieve.toml").write_text("[sieve]\nfail_on = 'major'\nignore = ['docs/*']\n")
    c = cfg.build({}, environ={}, cwd=tmp_path)
    assert c.fail_on is Severity.MAJOR and c.ignore == ("docs/*",)


def test_config_is_frozen():
    c = cfg.Config()
    with pytest.raises(Exception):
        c.threshold = Severity.MAJOR  # type: ignore[misc]


def test_explanations_are_opt_in(tmp_path):
    assert cfg.build({}, environ={}, cwd=tmp_path).explain is False
    assert cfg.build({}, environ={"SIEVE_EXPLAIN": "true"}, cwd=tmp_path).explain is True
    assert cfg.build({"explain": True}, environ={"SIEVE_EXPLAIN": "false"}, cwd=tmp_path).explain is True


# --- strict settings: registered options classes, real tables, hints that name real settings ---------------

def test_component_tables_are_real_and_reach_the_component(tmp_path):
    from bot import app

    (tmp_path / ".sieve.toml").write_text(
        '[reviewers.llm]\nmax_input_tokens = 900\nbase_url = "http://127.0.0.1:1/v1"\nmodel = "m"\n'
        '[reviewers.ruff]\ntimeout_s = 7.5\nselect = ["F"]\n'
        '[github]\nbot_login = "sieve-bot"\ntrusted_users = [583231, 9919]\nwrite_pause = 0\n')
    c = cfg.build({}, environ={}, cwd=tmp_path)
    assert c.reviewers == ("ruff",)  # a [reviewers.llm] table does not switch the llm reviewer on
    llm = app.reviewer_config("llm", c)
    assert (llm.max_input_tokens, llm.base_url, llm.model, llm.timeout_s) == (900, "http://127.0.0.1:1/v1", "m", 30.0)
    assert c.llm_base_url == "http://127.0.0.1:1/v1" and c.llm_model == "m"  # the shorthands agree
    ruff = app.reviewer_config("ruff", c)
    assert ruff.timeout_s == 7.5 and ruff.select == ("F",)
    assert c.bot_login == "sieve-bot" and c.trusted_users == (583231, 9919)
    host = app.make_host("github", c, "token-for-tests", "")
    assert host.configured_login == "sieve-bot" and host.trusted_users == (583231, 9919) and host.policy.write_pause == 0 and host.base_url == "https://api.github.com"


def test_reviewers_and_rater_may_be_chosen_inside_their_tables(tmp_path):
    (tmp_path / ".sieve.toml").write_text('[sieve.reviewers]\nuse = ["ruff", "sarif"]\n'
                                          '[sieve.reviewers.sarif]\npaths = ["a.sarif"]\n'
                                          '[sieve.rater]\nuse = "openai"\n'
                                          '[sieve.rater.openai]\nbase_url = "http://127.0.0.1:2/v1"\nmodel = "x"\n')
    c = cfg.build({}, environ={}, cwd=tmp_path)
    assert c.reviewers == ("ruff", "sarif") and c.sarif == ("a.sarif",) and c.rater == "openai"
    assert c.options("rater.openai").rater_kwargs()["base_url"] == "http://127.0.0.1:2/v1"


def test_shorthands_and_tables_follow_the_precedence(tmp_path):
    (tmp_path / ".sieve.toml").write_text('[reviewers.llm]\nmodel = "from-file"\n')
    c = cfg.build({"llm_model": "from-flag"}, environ={"SIEVE_LLM_MODEL": "from-env"}, cwd=tmp_path)
    assert c.options("reviewers.llm").model == "from-flag" and c.llm_model == "from-flag"
    c = cfg.build({}, environ={"SIEVE_LLM_MODEL": "from-env"}, cwd=tmp_path)
    assert c.options("reviewers.llm").model == "from-env"
    (tmp_path / ".sieve.toml").write_text('llm_model = "a"\n[reviewers.llm]\nmodel = "b"\n')
    with pytest.raises(ConfigError, match="sets both llm_model and reviewers.llm.model"):
        cfg.build({}, environ={}, cwd=tmp_path)


@pytest.mark.parametrize("toml,message", [
    ('lexical = "flase"', 'lexical = "flase".*expected true or false'),
    ("max_comments = 2.9", "max_comments = 2.9.*whole number"),
    ("max_comments = true", "max_comments = true.*whole number"),
    ('rater = "bogus"', "unknown rater 'bogus'"),
    ("ignore = {a = 1}", "ignore.*list of strings"),
    ("reviewers = []", "reviewers is empty"),
    ("max_diff_bytes = -1", "max_diff_bytes is -1"),
    ('reviewers = "ruff"', "reviewers.*list of strings"),
    ("timeout = inf", "timeout = Infinity.*expected a number"),
    ("mass_cutoff = 0", "mass_cutoff is 0.0"),
    ('weight_format = "fp8"', "weight_format"),
    ("[reviewers.llm]\nmax_input_tokens = 1.5", "reviewers.llm.max_input_tokens is 1.5.*whole number"),
    ("[reviewers.llm]\ntimeout_s = -1", "reviewers.llm.timeout_s is -1.0.*> 0"),
    ("[reviewers.llm]\nbase_url = \"localhost:8000\"", "reviewers.llm.base_url.*http\\(s\\) URL"),
    ("[reviewers.ruff]\ntimeout_s = 0", "reviewers.ruff.timeout_s"),
    ("[reviewers.ruff]\nbogus = 1", "unknown key reviewers.ruff.bogus.*takes: executable"),
    ("[reviewers.llm]\nresponse_format = 3", "reviewers.llm.response_format.*a string"),
    ("[reviewers]\nllm = 3", "reviewers.llm = 3 .*neither `use` nor a table"),
    ("[rater.openai]\nmode = \"guess\"", "rater.openai.mode.*top or echo"),
    ("[github]\ntrusted_users = [\"octo\"]", "github.trusted_users.*list of whole numbers.*numeric ids, not their logins"),
    ("[gitlab]\ntrusted_users = [0]", "gitlab.trusted_users is \\[0\\], expected user ids"),
    ("[gitlab]\nurl = \"gitlab\"", "gitlab.url.*http\\(s\\) URL"),
    ("github = 1", "github in .* must be a table"),
    ("[sieve]\nthreshold = \"major\"\n[reviewers.llm]\nmodel = \"m\"", "also reviewers outside it"),
])
def test_settings_are_never_coerced(tmp_path, toml, message):
    (tmp_path / ".sieve.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message):
        cfg.build({}, environ={}, cwd=tmp_path)


def test_environment_text_is_read_strictly(tmp_path):
    assert cfg.build({}, environ={"SIEVE_LEXICAL": "Off", "SIEVE_MAX_COMMENTS": " 4 "}, cwd=tmp_path).max_comments == 4
    assert cfg.build({}, environ={"SIEVE_LEXICAL": "no"}, cwd=tmp_path).lexical is False
    assert cfg.build({}, environ={"SIEVE_THRESHOLD": ""}, cwd=tmp_path).threshold is Severity.MINOR  # empty: unset
    assert cfg.build({}, environ={"SIEVE_FAIL_ON": "none"}, cwd=tmp_path).fail_on is None
    for env, message in (({"SIEVE_MAX_COMMENTS": "2.9"}, "SIEVE_MAX_COMMENTS"), ({"SIEVE_TIMEOUT": "nan"}, "SIEVE_TIMEOUT=NaN"),
                         ({"SIEVE_REVIEWERS": ","}, "reviewers is empty"), ({"SIEVE_EXPLAIN": "ja"}, "SIEVE_EXPLAIN")):
        with pytest.raises(ConfigError, match=message):
            cfg.build({}, environ=env, cwd=tmp_path)


def test_empty_flag_values_are_an_error_not_a_default(tmp_path):
    for key in ("threshold", "fail_on", "model", "reviewers"):
        with pytest.raises(ConfigError, match=f"--{key.replace('_', '-')} was given an empty value"):
            cfg.build({key: ""}, environ={}, cwd=tmp_path)


def test_every_component_registers_a_strict_options_class():
    import importlib

    from bot.hosts.base import HOSTS
    from bot.rater import RATERS
    from bot.registry import describe
    from bot.reviewers import REVIEWERS

    for host in ("github", "gitlab"):
        importlib.import_module(f"bot.hosts.{host}")  # registers it
    assert set(HOSTS.names()) >= {"github", "gitlab"}
    for registry in (REVIEWERS, RATERS, HOSTS):
        for name in registry.names():
            cls = registry.options_class(name)
            assert cls is not None and cls.__dataclass_params__.frozen, (registry.kind, name)
            assert all(help_text for *_, help_text in describe(cls)), (registry.kind, name)


def test_a_registered_fake_uses_the_same_path(tmp_path):
    from dataclasses import dataclass, field

    from bot import app
    from bot.reviewers import REVIEWERS

    @dataclass(frozen=True)
    class EchoOptions:
        words: int = field(default=1, metadata={"help": "words to echo"})

    made = []
    REVIEWERS.add("echo", lambda options: made.append(options) or object(), EchoOptions)
    try:
        (tmp_path / ".sieve.toml").write_text('[reviewers]\nuse = ["echo"]\n[reviewers.echo]\nwords = 3\n')
        c = cfg.build({}, environ={}, cwd=tmp_path)
        app.make_reviewer("echo", c)
        assert made == [EchoOptions(words=3)]
        (tmp_path / ".sieve.toml").write_text('[reviewers.echo]\nwords = "3"\n')
        with pytest.raises(ConfigError, match="reviewers.echo.words"):
            cfg.build({}, environ={}, cwd=tmp_path)
    finally:
        REVIEWERS.remove("echo")


# every hint or error that names a setting names one that exists ------------------------------------------------

_DOTTED = re.compile(r"(?<![\w./-])((?:reviewers|rater)\.[a-z_]+\.[a-z_]+|(?:github|gitlab)\.[a-z_]+)(?![\w/-]|\.\w)")
_FLAT = re.compile(r"\b(?:raise|lower|set|fix|unset)\s+`?([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`?"
                   r"|`?([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`? in \.sieve\.toml")
_NOT_SETTINGS = {"gitlab.com", "github.com"}


def setting_names(text: str) -> set[str]:
    """The settings a message names: ``reviewers.llm.timeout_s`` / ``[github] url`` forms, and ``raise X`` /
    ``X in .sieve.toml`` for top-level keys."""
    found = {m[1] for m in _DOTTED.finditer(text)} - _NOT_SETTINGS
    found |= {m[1] or m[2] for m in _FLAT.finditer(text)}
    return found


def test_the_scan_finds_settings_that_do_not_exist():
    assert setting_names("raise reviewers.llm.max_retry_after and max_diff_bytes in .sieve.toml") == {
        "reviewers.llm.max_retry_after", "max_diff_bytes"}
    assert not cfg.setting_exists("reviewers.llm.max_retry_after")
    assert not cfg.setting_exists("reviewers.ruff.timeout")
    assert cfg.setting_exists("reviewers.llm.max_wait_s") and cfg.setting_exists("reviewers.ruff.timeout_s")
    assert setting_names("see https://api.github.com/repos or gitlab.com") == set()


def test_every_setting_named_in_the_code_exists():
    root = Path(cfg.__file__).resolve().parent
    named: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for name in setting_names(node.value):
                    named.setdefault(name, []).append(f"{path.relative_to(root)}:{node.lineno}")
    assert "reviewers.llm.max_wait_s" in named and "reviewers.ruff.timeout_s" in named  # the scan sees them
    missing = {name: where for name, where in named.items() if not cfg.setting_exists(name)}
    assert missing == {}


def test_every_flag_named_in_an_error_exists():
    from bot.cli import build_parser

    parser = build_parser()
    flags = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            flags.update(s for s in action.option_strings if s.startswith("--"))
            stack.extend(getattr(action, "choices", None).values() if isinstance(action.choices, dict) else ())
    named: dict[str, str] = {}
    root = Path(cfg.__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_error = isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", "")).endswith(
                ("Error", "Failure"))
            is_hint = isinstance(call, ast.AnnAssign) and getattr(call.target, "id", "") == "required_hint"
            if not (is_error or is_hint):
                continue
            for node in ast.walk(call):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", node.value):
                        named[flag] = f"{path.relative_to(root)}:{node.lineno}"
    assert "--since" in named and "--llm-base-url" in named  # the scan sees errors and required_hint
    other_tools = {"--output-format"}  # ruff's own flag, named in a hint about the ruff version
    assert {flag: where for flag, where in named.items() if flag not in flags | other_tools} == {}
