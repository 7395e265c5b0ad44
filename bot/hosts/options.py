"""The settings tables of the hosts, ``[github]`` and ``[gitlab]``: one frozen options class each.

Kept apart from the SDK modules so the settings can be described and checked without importing PyGithub or
python-gitlab; each host's entry (bot/hosts/github_entry.py, bot/hosts/gitlab_entry.py) registers its class in
``HOSTS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.registry import check_url, require


def _opt(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


def _trusted(section: str, lookup: str) -> Any:
    """``trusted_users``: numeric user ids, never logins — a login can be renamed and then taken by someone else.
    A login given here is refused with a hint that says where the id is found (``hint`` is read by
    bot.registry.parse_options when a value has the wrong type)."""
    return field(default=(), metadata={
        "help": "numeric user ids whose reactions and corrections always count as trusted",
        "hint": f"write the users' numeric ids, not their logins, e.g. {section}.trusted_users = [583231] "
                f"(a user's id is the \"id\" field of {lookup})"})


@dataclass(frozen=True)
class GitHubOptions:
    url: str = _opt("https://api.github.com", "API base URL (GitHub Enterprise: https://HOST/api/v3)")
    timeout: float = _opt(30.0, "seconds before one HTTP call is abandoned and retried")
    max_retries: int = _opt(4, "retries of a call that failed with 5xx, a timeout or a rate limit")
    write_pause: float = _opt(1.0, "seconds between two writes (GitHub's advice against secondary limits)")
    bot_login: str = _opt("", "login whose comments are Sieve's own (empty: asked from the token, or "
                              "github-actions[bot] under an Actions token)")
    trusted_users: tuple[int, ...] = _trusted("github", "GET /users/LOGIN on GitHub's API")
    inherit: ClassVar[dict[str, str]] = {"timeout": "timeout"}

    def __post_init__(self) -> None:
        check_url("github.url", self.url)
        _common("github", self)

    def host_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``GitHubHost`` these options stand for."""
        return {"base_url": self.url, "timeout": self.timeout, "max_retries": self.max_retries,
                "write_pause": self.write_pause, "bot_login": self.bot_login or None,
                "trusted_users": tuple(self.trusted_users)}


@dataclass(frozen=True)
class GitLabOptions:
    url: str = _opt("https://gitlab.com", "instance URL (self-managed: https://gitlab.example.com)")
    timeout: float = _opt(30.0, "seconds before one HTTP call is abandoned and retried")
    max_retries: int = _opt(4, "retries of a call that failed with 5xx, a timeout or a rate limit")
    write_pause: float = _opt(0.5, "seconds between two writes")
    bot_login: str = _opt("", "user name whose notes are Sieve's own (empty: asked from the token)")
    trusted_users: tuple[int, ...] = _trusted("gitlab", "GET /api/v4/users?username=LOGIN on the instance")
    inherit: ClassVar[dict[str, str]] = {"timeout": "timeout"}

    def __post_init__(self) -> None:
        check_url("gitlab.url", self.url)
        _common("gitlab", self)

    def host_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``GitLabHost`` these options stand for."""
        return {"url": self.url, "timeout": self.timeout, "max_retries": self.max_retries,
                "write_pause": self.write_pause, "bot_username": self.bot_login or None,
                "trusted_users": tuple(self.trusted_users)}


def _common(section: str, options: Any) -> None:
    require(options.timeout > 0, f"{section}.timeout", options.timeout, "a number of seconds > 0")
    require(options.max_retries >= 0, f"{section}.max_retries", options.max_retries, "a whole number ≥ 0")
    require(options.write_pause >= 0, f"{section}.write_pause", options.write_pause, "a number of seconds ≥ 0")
    require(all(uid > 0 for uid in options.trusted_users), f"{section}.trusted_users", list(options.trusted_users),
            "user ids, which are whole numbers ≥ 1")
