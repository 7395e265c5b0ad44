"""A comment on a merge request as Sieve reads it (pure): who wrote it, whether that is Sieve, and Sieve's footer.

Whether a comment is Sieve's is decided by its author alone — the identity the host's token acts as (GitHub:
the token's user, ``github-actions[bot]`` under an Actions token, or the configured ``bot_login``; GitLab: the
token's user). A marker in anyone else's comment is never read: strangers can write any text, markers included.
Hosts build one :class:`Comment` per comment they fetch; plan, hosts and feedback all use the same record, whose
marker is decoded once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot import markers


@dataclass(frozen=True)
class Identity:
    """The account Sieve writes as. Logins compare case-insensitively (as on GitHub and GitLab)."""

    login: str

    def __post_init__(self) -> None:
        if not self.login.strip():
            raise ValueError("an identity needs a login")

    def is_self(self, author: str | None) -> bool:
        return (author or "").strip().lower() == self.login.strip().lower()


@dataclass(frozen=True)
class Comment:
    """One comment, decoded once. ``marker`` and ``summary`` are read only when ``ours`` (else None / False)."""

    id: str
    body: str
    author: str = ""
    ours: bool = False  # written by Sieve's own identity; nothing else about a comment makes it Sieve's
    path: str | None = None
    line: int | None = None
    has_replies: bool = False
    resolved: bool = False
    marker: markers.Marker | None = field(init=False, compare=False, repr=False)
    summary: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "marker", markers.decode(self.body) if self.ours else None)
        object.__setattr__(self, "summary", self.ours and markers.is_summary(self.body))

    @property
    def finding(self) -> bool:
        """One of Sieve's finding comments (ours, with a readable marker)."""
        return self.marker is not None


def read(comment_id: object, author: str | None, body: str | None, me: Identity, *, path: str | None = None,
         line: int | None = None, has_replies: bool = False, resolved: bool = False) -> Comment:
    """The record of one fetched comment; ``me`` is Sieve's identity on that host."""
    return Comment(id=str(comment_id), body=body or "", author=author or "", ours=me.is_self(author), path=path,
                   line=line, has_replies=has_replies, resolved=resolved)
