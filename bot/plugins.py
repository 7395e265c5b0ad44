"""The one module that imports the plug-ins — hosts, raters, reviewers — so that they register.

A plug-in is a module that registers itself when it is imported: a host adds a :class:`bot.hosts.base.HostEntry`
to ``HOSTS``, a rater backend adds its factory and options class to ``RATERS``, a reviewer registers with
``REVIEWERS``. The tuples below are the registration lines: adding a host is its own file under bot/hosts/ plus
one line in ``HOST_MODULES`` (docs/development.md shows it). The command line, bot.remote and bot.app ask
:func:`registry` for what is registered; bot.config imports no plug-in and asks the same function through the
hook installed at the end of this module. A kind's modules are imported the first time that kind is asked for,
and the built-in host entries leave their SDKs unimported until a host is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bot import config

if TYPE_CHECKING:
    from bot.hosts.base import HostEntry

HOST_MODULES = (
    "bot.hosts.github_entry",
    "bot.hosts.gitlab_entry",
)
RATER_MODULES = (
    "bot.rater",
)
REVIEWER_MODULES = (
    "bot.reviewers",
)

#: kind (as the settings tables name it) → (the modules that register plug-ins of that kind, where its registry is)
_KINDS = {"hosts": (HOST_MODULES, "bot.hosts.base", "HOSTS"),
          "rater": (RATER_MODULES, "bot.rater.base", "RATERS"),
          "reviewers": (REVIEWER_MODULES, "bot.reviewers.base", "REVIEWERS")}


def registry(kind: str) -> Any:
    """The registry of ``kind`` (hosts, rater or reviewers) with every plug-in of that kind registered."""
    modules, home, attribute = _KINDS[kind]
    for name in modules:
        importlib.import_module(name)
    return getattr(importlib.import_module(home), attribute)


def host_entries() -> list[HostEntry]:
    """Every registered host's entry, by name."""
    return registry("hosts").entries()


def host_entry(name: str) -> HostEntry:
    """The entry of the host ``name``; a ConfigError naming the registered hosts when there is none."""
    return registry("hosts").entry(name)


config.use_registries(registry)
