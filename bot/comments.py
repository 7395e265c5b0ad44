"""A comment on a merge request as Sieve reads it (pure): who wrote it, whether that is Sieve, and Sieve's footer.

Whether a comment is Sieve's is decided by two things a stranger cannot produce together:

- its **author** is the identity the host's token acts as (GitHub: the token's user, ``github-actions[bot]``
  under an Actions token, or the configured ``bot_login``; GitLab: the token's user) — a marker in anyone
  else's comment is never read;
- its **seal** verifies (bot.markers.Seal: an HMAC over the repository, the whole text and the payload, keyed
  with ``SIEVE_MARKER_KEY`` when set). Other workflows write as ``github-actions[bot]`` too, and their comments
  may end with text a stranger controls (a pull request's title); they cannot carry a valid seal. Comments
  from before sealing (unsealed, marker v1) are still read where the author alone proves them Sieve's: a
  dedicated account with no ``SIEVE_MARKER_KEY`` set (a key asks for sealed comments only).

Hosts build one :class:`Comment` per comment they fetch; plan, hosts and feedback all use the same record, whose
marker is decoded once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot import markers


#: Logins that many writers share: every workflow's GITHUB_TOKEN writes as this account.
SHARED_LOGINS = frozenset({"github-actions[bot]"})


@dataclass(frozen=True)
class Identity:
    """The account Sieve writes as, and the seal its comments carry in one repository. Logins compare
    case-insensitively (as on GitHub and GitLab)."""

    login: str
    seal: markers.Seal = field(default_factory=lambda: markers.Seal(""))

    def __post_init__(self) -> None:
        if not self.login.strip():
            raise ValueError("an identity needs a login")

    @property
    def shared(self) -> bool:
        """Do other writers use this account too (so the author alone proves nothing)?"""
        return self.login.strip().lower() in SHARED_LOGINS

    def is_self(self, author: str | None) -> bool:
        return (author or "").strip().lower() == self.login.strip().lower()

    def owns(self, author: str | None, body: str) -> bool:
        """Is this comment Sieve's own: its author, and a seal that verifies (or, for a dedicated account only,
        a comment written before sealing existed)?"""
        if not self.is_self(author):
            return False
        if self.seal.verify(body):
            return True
        return not self.shared and not self.seal.key and _legacy(body)


def _legacy(body: str) -> bool:
    """An unsealed footer as Sieve wrote it before sealing: a v1 marker or the bare summary marker."""
    if body.rstrip().endswith(markers.SUMMARY_MARKER):
        return True
    return markers.footer_version(body) in markers.LEGACY_VERSIONS


@dataclass(frozen=True)
class Comment:
    """One comment, decoded once. ``marker`` and ``summary`` are read only when ``ours`` (else None / False)."""

    id: str
    body: str
    author: str = ""
    ours: bool = False  # Sieve's own: its identity wrote it and its seal verifies (Identity.owns)
    path: str | None = None
    line: int | None = None
    has_replies: bool = False
    resolved: bool = False
    reacted: bool = False  # someone reacted to it (a person's signal: such a comment is never removed)
    marker: markers.Marker | None = field(init=False, compare=False, repr=False)
    summary: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "marker", markers.decode(self.body) if self.ours else None)
        object.__setattr__(self, "summary", self.ours and markers.is_summary(self.body))

    @property
    def finding(self) -> bool:
        """One of Sieve's finding comments (ours, with a readable marker)."""
        return self.marker is not None

    @property
    def signal(self) -> bool:
        """Did a person react or reply? Then removing this comment would lose feedback."""
        return self.has_replies or self.reacted

    @property
    def summary_data(self) -> markers.SummaryData:
        return markers.summary_data(self.body) if self.summary else markers.SummaryData()


def read(comment_id: object, author: str | None, body: str | None, me: Identity, *, path: str | None = None,
         line: int | None = None, has_replies: bool = False, resolved: bool = False, reacted: bool = False) -> Comment:
    """The record of one fetched comment; ``me`` is Sieve's identity on that host."""
    return Comment(id=str(comment_id), body=body or "", author=author or "", ours=me.owns(author, body or ""),
                   path=path, line=line, has_replies=has_replies, resolved=resolved, reacted=reacted)
