"""Config precedence (defaults ← file ← env ← flags) and clear errors."""

from __future__ import annotations

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
    with pytest.raises(ConfigError, match="--threshold 'severe': unknown severity, expected one of critical"):
        cfg.build({"threshold": "severe"}, environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="SIEVE_MAX_COMMENTS='many': not valid, expected a whole number"):
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
