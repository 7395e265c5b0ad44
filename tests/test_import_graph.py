"""The pure core depends on no plug-in: bot/config.py and the core modules import nothing from bot/hosts, bot/rater,
bot/reviewers or the wiring module bot/plugins.py — not directly, not through another bot module, not through
importlib — and importing them in a fresh interpreter loads none of those packages."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUG_INS = ("bot.hosts", "bot.rater", "bot.reviewers", "bot.plugins")
CORE = ("bot.config", "bot.findings", "bot.severity", "bot.plan", "bot.diff", "bot.anchors", "bot.prompt",
        "bot.registry", "bot.errors", "bot.render", "bot.markers", "bot.comments", "bot.paths", "bot.outcome")


def _module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _leading_text(node: ast.AST) -> str | None:
    """The module name an ``importlib.import_module(...)`` argument starts with (f-strings: their constant head)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def imports_of(source: str) -> set[str]:
    """Every module a source text imports, anywhere in it: import statements (also inside functions),
    ``from bot import x`` as ``bot.x``, and the names given to ``importlib.import_module`` or ``__import__``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if _module_file(f"{node.module}.{alias.name}") is not None)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                text = _leading_text(node.args[0])
                if text:
                    found.add(text)
    return found


def closure(start: str) -> dict[str, str]:
    """Every bot module ``start`` reaches by its imports, each with the module that imports it."""
    seen = {start: ""}
    todo = [start]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None:
            continue
        for imported in imports_of(path.read_text(encoding="utf-8")):
            if imported.startswith("bot") and imported not in seen:
                seen[imported] = name
                todo.append(imported)
    return seen


def _plug_ins(names) -> list[str]:
    return sorted(n for n in names if n.startswith(PLUG_INS))


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_reaches_no_plug_in_through_its_imports(module):
    reached = closure(module)
    offending = _plug_ins(reached)
    assert not offending, f"{module} reaches {offending[0]} (imported by {reached[offending[0]]})"


def test_the_checker_sees_every_way_of_importing_a_plug_in():
    """What the test above looks for: a plain import, one inside a function, ``from bot import``, importlib."""
    source = '''
import bot.rater
def f(name):
    import importlib
    from bot import reviewers
    importlib.import_module("bot.plugins")
    return importlib.import_module(f"bot.hosts.{name}")
'''
    assert _plug_ins(imports_of(source)) == ["bot.hosts.", "bot.plugins", "bot.rater", "bot.reviewers"]


def test_importing_the_core_in_a_fresh_interpreter_loads_no_plug_in():
    script = ("import json, sys\n"
              f"import {', '.join(CORE)}\n"
              "bot.config.Config(); bot.config.flag_name('github_url')\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bot'))))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env={"PATH": "", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "bot.config" in loaded and not _plug_ins(loaded), _plug_ins(loaded)


def test_the_command_line_gets_its_hosts_through_the_wiring_module_without_loading_an_sdk():
    """Building the parser registers the hosts (their flags come from the entries) and the raters (--rater's
    choices) through bot.plugins; PyGithub's and python-gitlab's modules wait until a host is made."""
    script = ("import json, sys, bot.cli; bot.cli.build_parser(); "
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bot'))))")
    done = subprocess.run([sys.executable, "-c", script],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert {"bot.plugins", "bot.hosts.github_entry", "bot.hosts.gitlab_entry", "bot.rater"} <= loaded
    assert not loaded & {"bot.hosts.github", "bot.hosts.gitlab"}  # the SDK modules wait until a host is made


@pytest.mark.parametrize("module", ("bot.cli", "bot.remote", "bot.app"))
def test_the_wiring_reaches_plug_ins_only_through_bot_plugins(module):
    """cli, remote and app loop over the registries bot.plugins fills; they import no host, rater or reviewer
    module by name (the protocol modules ``*.base`` and the local report writer are not plug-ins)."""
    own = imports_of(_module_file(module).read_text(encoding="utf-8"))
    named = [n for n in _plug_ins(own) if n != "bot.plugins" and not n.endswith(".base") and n != "bot.hosts.local"]
    assert not named and "bot.plugins" in own, named
