"""Real git repositories in a temp folder, for tests that need real ``git diff`` output.

Local config only (user, email, ``core.autocrlf=false``), never the user's global settings, so the
bytes git writes are the bytes a CI runner would see.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "LC_ALL": "C",
}


class GitRepo:
    """A throwaway repository: write files, commit, and get diffs as bytes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        for key, value in (("user.name", "Sieve Test"), ("user.email", "sieve@example.invalid"),
                           ("core.autocrlf", "false"), ("core.quotepath", "true"), ("commit.gpgsign", "false")):
            self.git("config", key, value)

    def git(self, *args: str) -> bytes:
        """Run git in the repository and return its stdout; raises with stderr on failure."""
        env = {**os.environ, **_ENV}
        done = subprocess.run(["git", *args], check=False, cwd=self.root, env=env, capture_output=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def write(self, path: str, content: bytes | str, *, mode: int | None = None) -> Path:
        """Write a file (bytes are written verbatim, so CRLF and latin-1 survive)."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        if mode is not None:
            target.chmod(mode)
        return target

    def commit(self, message: str = "change") -> str:
        """Stage everything and commit; returns the new commit id."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").decode().strip()

    def diff(self, *args: str) -> bytes:
        """``git diff`` of the given revisions/options, e.g. ``diff("HEAD~1", "HEAD", "-M")``."""
        return self.git("diff", "--no-color", "--no-ext-diff", *args)

    def show(self, rev: str, path: str) -> bytes:
        """A file's content at a revision (what the post-image line numbers refer to)."""
        return self.git("show", f"{rev}:{path}")


def make_repo(root: Path) -> GitRepo:
    """Create a repository at ``root`` (usually pytest's ``tmp_path / "repo"``)."""
    return GitRepo(root)
