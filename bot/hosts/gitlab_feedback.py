"""Harvesting Sieve's GitLab notes with their award emoji and replies, and whom to trust (a mixin of
:class:`bot.hosts.gitlab.GitLabHost`: ``self`` is the host, its calls go through the host's ``_call``, ``_list`` and
``_unless_absent``; python-gitlab is imported only in bot/hosts/gitlab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from bot import comments
from bot.hosts.base import CommentFeedback, Reply, Vote

#: GitLab's access levels: none, minimal, guest, planner, reporter, developer, maintainer, owner, admin
ACCESS_LEVELS = (0, 5, 10, 15, 20, 30, 40, 50, 60)
_EMOJI_VOTES = {"thumbsup": "+1", "thumbsdown": "-1"}


def _encode(project: str) -> str:
    """A project id, or its full path URL-encoded (``group%2Fsub%2Fproject``) as GitLab's API wants."""
    return project if project.isdigit() else quote(project, safe="")


def _notes(discussion: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in discussion.get("notes") or [] if not n.get("system")]


class FeedbackReader:
    """``feedback``: Sieve's notes in merge requests updated since a date, with the votes and replies of others."""

    def _trusted(self, project: str, user_id: int | None) -> bool | None:
        """Trusted when the user's numeric id is in ``trusted_users`` or their role on the project, inherited
        memberships included, is Developer (30) or more; a 404 means not a member (False). None (unknown): GitLab
        named no user id, or answered an access level Sieve does not know (why: ``_unknown``). Cached per user."""
        if user_id is None:
            return None
        if user_id in self.trusted_users:
            return True
        if user_id not in self._trust:
            self._trust[user_id] = self._member_level(project, user_id)
        level = self._trust[user_id]
        return None if level is None else level >= self.min_trusted_access

    def _member_level(self, project: str, user_id: int) -> int | None:
        member = self._unless_absent("reading a member's role",
                                     lambda: self._gl.http_get(f"/projects/{project}/members/all/{user_id}"), None)
        if member is None:
            return 0  # 404: not a member
        level = member.get("access_level") if isinstance(member, dict) else None
        if level not in ACCESS_LEVELS:
            self._unknown[user_id] = f"GitLab answered the access level {level!r}, which Sieve does not know"
            return None
        return int(level)

    def _author(self, project: str, user: dict[str, Any]) -> dict[str, Any]:
        """What a Vote or Reply carries about its author: user name, numeric id, trusted, and why trust is unknown."""
        user_id = user.get("id")
        user_id = user_id if isinstance(user_id, int) and not isinstance(user_id, bool) else None
        allowed = self._trusted(project, user_id)
        why = ("GitLab named no user id" if user_id is None else self._unknown.get(user_id, "")) \
            if allowed is None else ""
        return {"user": str(user.get("username") or ""), "user_id": user_id, "trusted": bool(allowed),
                "trust_unknown": why}

    def feedback(self, repo: str, since: str | None = None) -> Iterator[CommentFeedback]:
        """Sieve's notes (its identity, its seal) in merge requests updated since ``since``, with votes/replies."""
        project = _encode(repo)
        me = self._bot(repo)
        query: dict[str, Any] = {"state": "all", "order_by": "updated_at", "sort": "asc"}
        if since:
            query["updated_after"] = since
        for mr in self._list("listing merge requests", f"/projects/{project}/merge_requests", query):
            base = f"/projects/{project}/merge_requests/{mr['iid']}"
            for discussion in self._list("reading discussions", f"{base}/discussions"):
                notes = _notes(discussion)
                first = notes[0] if notes else {}
                record = comments.read(first.get("id", ""), (first.get("author") or {}).get("username"),
                                       first.get("body"), me)
                if not notes or not record.finding:
                    continue
                yield self._one_feedback(repo, project, mr, base, record, first, notes[1:], me)

    def _one_feedback(self, repo: str, project: str, mr: dict[str, Any], base: str, record: comments.Comment,
                      note: dict[str, Any], replies: list[dict[str, Any]], me: comments.Identity) -> CommentFeedback:
        votes = []
        for award in self._list("reading award emoji", f"{base}/notes/{note['id']}/award_emoji"):
            user = award.get("user") or {}
            if award.get("name") in _EMOJI_VOTES and not me.is_self(user.get("username")):
                votes.append(Vote(content=_EMOJI_VOTES[award["name"]], created_at=award.get("created_at", ""),
                                  id=str(award.get("id", "")), **self._author(project, user)))
        answers = [Reply(body=r.get("body") or "", created_at=r.get("created_at", ""), id=str(r.get("id", "")),
                         **self._author(project, r.get("author") or {}))
                   for r in replies if not me.is_self((r.get("author") or {}).get("username"))]
        return CommentFeedback(host="gitlab", repo=repo, number=int(mr["iid"]), comment=record,
                               url=f"{mr.get('web_url', '')}#note_{note['id']}",
                               votes=tuple(votes), replies=tuple(answers), created_at=note.get("created_at", ""))
