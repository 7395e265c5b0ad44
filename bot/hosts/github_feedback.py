"""Harvesting Sieve's GitHub review comments with their reactions and replies (a mixin of
:class:`bot.hosts.github.GitHubHost`: ``self`` is the host; its calls go through the host's ``_pages``, trust through
``self.trust``, :mod:`bot.hosts.github_trust`; PyGithub is imported only in bot/hosts/github.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bot import comments
from bot.hosts.base import CommentFeedback, Reply, Vote
from bot.hosts.github_text import _iso, _login, _pr_number


class FeedbackReader:
    """``feedback``: Sieve's comments with the +1/-1 reactions and the replies of others, each with its trust."""

    def feedback(self, repo: str, since: str | None = None) -> Iterator[CommentFeedback]:
        """Sieve's own review comments (its identity's, never a stranger's) with +1/-1 reactions and replies, each
        trusted when :meth:`may_write` says so. Reactions are read only where the roll-up shows a +1 or -1."""
        when = datetime.fromisoformat(since) if since else None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        params = {"sort": "created", "direction": "asc", **({"since": _iso(when)} if when else {})}
        listed = self._pages(f"listing review comments of {repo}", f"/repos/{repo}/pulls/comments", params)
        replies: dict[int, list[dict[str, Any]]] = {}
        for c in listed:
            if c.get("in_reply_to_id"):
                replies.setdefault(c["in_reply_to_id"], []).append(c)
        me = self.identity(repo)
        for c in listed:
            record = comments.read(c["id"], _login(c), c.get("body"), me)
            if c.get("in_reply_to_id") or not record.finding:
                continue
            yield CommentFeedback(host="github", repo=repo, number=_pr_number(c.get("pull_request_url")),
                                  url=c.get("html_url") or "", comment=record,
                                  votes=tuple(self._votes(repo, c, me)),
                                  replies=tuple(self._replies(repo, replies.get(c["id"], []), me)),
                                  created_at=c.get("created_at") or "")

    def may_write(self, repo: str, login: str, user_id: int | None = None) -> bool | None:
        """Is this user's feedback trusted? See :class:`bot.hosts.github_trust.Trust` (None: GitHub's answer on
        the permission was unclear, so the user's trust is unknown)."""
        return self.trust.may_write(repo, login, user_id)

    def _votes(self, repo: str, comment: dict[str, Any], me: comments.Identity) -> list[Vote]:
        rollup = comment.get("reactions") or {}
        if rollup and not (rollup.get("+1") or rollup.get("-1")):
            return []
        votes = []
        path = f"/repos/{repo}/pulls/comments/{comment['id']}/reactions"
        for r in self._pages(f"reading reactions on comment {comment['id']}", path):
            login = _login(r)
            if r.get("content") not in ("+1", "-1") or not login or me.is_self(login):
                continue
            votes.append(Vote(content=r["content"], created_at=r.get("created_at") or "", id=str(r.get("id", "")),
                              **self.trust.fields(repo, r.get("user") or {})))
        return votes

    def _replies(self, repo: str, listed: list[dict[str, Any]], me: comments.Identity) -> list[Reply]:
        return [Reply(body=c.get("body") or "", created_at=c.get("created_at") or "", id=str(c["id"]),
                      **self.trust.fields(repo, c.get("user") or {}))
                for c in listed if _login(c) and not me.is_self(_login(c))]
