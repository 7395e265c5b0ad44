"""Whose feedback counts on GitHub (pure; the one HTTP call is passed in): trust by stable user id, and a clear
"unknown" where GitHub's answer on a voter's permission is neither yes nor no.

A login can be renamed and then registered by someone else, so ``trusted_users`` holds numeric user ids, which
never move. Everyone else is trusted when ``GET /repos/{o}/{r}/collaborators/{username}/permission`` reports write
access. That call can also answer 404 (a deleted account, or a token that may not see the repository's
collaborators) or a permission value this Sieve does not know; such a voter is *unknown*: not trusted, and
reported with the reason, so that an export that comes out empty says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: the ``permission`` values GitHub reports (maintain is reported as write, triage as read)
WRITE_PERMISSIONS = ("admin", "write")
READ_PERMISSIONS = ("read", "none")
NOT_FOUND = object()  # what ``read_permission`` returns for a 404


class Trust:
    """The trust of each voter on each repository, looked up once per user and run."""

    def __init__(self, trusted_ids: tuple[int, ...], read_permission: Callable[[str, str], Any]) -> None:
        self.trusted_ids = frozenset(trusted_ids)
        self._read_permission = read_permission  # (repo, login) → the JSON answer, or NOT_FOUND
        self._answers: dict[tuple[str, str], bool | None] = {}
        self._unknown: dict[tuple[str, str], str] = {}

    def may_write(self, repo: str, login: str, user_id: int | None = None) -> bool | None:
        """True: a trusted id or write access; False: read access or none; None: GitHub's answer was unclear."""
        if user_id is not None and user_id in self.trusted_ids:
            return True
        key = (repo, login.lower())
        if key not in self._answers:
            self._answers[key] = self._decide(key, self._read_permission(repo, login))
        return self._answers[key]

    def _decide(self, key: tuple[str, str], answer: Any) -> bool | None:
        if answer is NOT_FOUND:
            self._unknown[key] = "GitHub answered 404"
            return None
        permission = answer.get("permission") if isinstance(answer, dict) else None
        if permission in WRITE_PERMISSIONS:
            return True
        if permission in READ_PERMISSIONS:
            return False
        self._unknown[key] = f"GitHub answered the permission {permission!r}, which Sieve does not know"
        return None

    def fields(self, repo: str, user: dict[str, Any]) -> dict[str, Any]:
        """What a Vote or Reply carries about its author: login, numeric id, trusted, and why trust is unknown."""
        login, user_id = str(user.get("login") or ""), user.get("id")
        user_id = user_id if isinstance(user_id, int) and not isinstance(user_id, bool) else None
        allowed = self.may_write(repo, login, user_id)
        why = self._unknown.get((repo, login.lower()), "") if allowed is None else ""
        return {"user": login, "user_id": user_id, "trusted": bool(allowed), "trust_unknown": why}
