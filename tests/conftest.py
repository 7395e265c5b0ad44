"""Test-wide settings that must exist before llama_cpp is imported anywhere, and the session-wide runner."""

import os

import pytest

import bot.plugins  # noqa: F401  (bot.config finds the registered plug-ins through it, as under `sieve`)

# llama.cpp's OpenMP workers busy-wait by default; on a shared 2-core runner that slows every model test.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def installed_runner(tmp_path_factory):
    """A runner's HOME after the Sieve Action's install step ran once, as written: a fresh virtual environment and a
    plain `pip install` of a copy of this checkout. The costly part of every as-shipped test, so one per session."""
    from tests.runner import install_runner

    return install_runner(tmp_path_factory.mktemp("runner"))
