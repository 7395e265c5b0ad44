"""The summary comment of a GitHub pull request: found, one kept of several, written and edited in place. A mixin of
:class:`bot.hosts.github.GitHubHost` (``self`` is the host; its calls go through the host's ``_call``/``_pages``, and
PyGithub is imported only in bot/hosts/github.py).

One summary per pull request: of several (runs that raced) the one about the pull request's head is kept and the
others removed; its seal records that head and the comments GitHub refused (bot.markers.SummaryData).
"""

from __future__ import annotations

from typing import Any

from bot import comments, markers, render
from bot.errors import HostError
from bot.hosts.base import ApplyResult, MergeRequest, MergeRequestRef
from bot.hosts.github_text import _login, summary_with
from bot.plan import PlannedComment, ReviewPlan


class SummaryWriter:
    """The summary half of GitHubHost."""

    def _summaries(self, ref: MergeRequestRef) -> list[dict[str, Any]]:
        """The bot's summary comments, oldest first (more than one only after two runs raced); remembered."""
        me = self.identity(ref.repo)
        found = sorted((c for c in self._pages(f"listing comments of {ref}",
                                               f"/repos/{ref.repo}/issues/{ref.number}/comments")
                        if comments.read(c["id"], _login(c), c.get("body"), me).summary), key=lambda c: c["id"])
        self._seen_summaries[str(ref)] = found
        return found

    @staticmethod
    def _keeper(found: list[dict[str, Any]], head: str) -> dict[str, Any] | None:
        """The summary to keep of several: the oldest one about ``head`` (the pull request's newest commit), else
        the oldest. Racing runs on different heads thus agree on the newest head's summary."""
        about_head = [c for c in found if markers.summary_data(c.get("body")).commit == head]
        return (about_head or found or [None])[0]

    def _write_summary(self, mr: MergeRequest, plan: ReviewPlan, unplaced: list[PlannedComment],
                       result: ApplyResult) -> None:
        """The summary: the real count of new comments, every comment GitHub refused (this run's and those held
        from earlier runs) listed once, and in its seal the head and the refused bodies' hashes."""
        placed = [*plan.held, *unplaced]
        state = markers.SummaryData(mr.head_sha, {c.fingerprint: markers.body_sha(c.body) for c in placed})
        body = summary_with(render.recount(plan.summary, result.created), placed)
        for c in unplaced:
            result.notes.append(f"{c.finding.anchor.path}:{c.finding.anchor.line}: GitHub refused the comment on the "
                                "line and on the file; it is listed in the summary and not sent again unchanged")
        self._upsert_summary(mr, self.identity(mr.ref.repo).seal.seal(body, state), result)

    def _upsert_summary(self, mr: MergeRequest, body: str, result: ApplyResult) -> None:
        """One summary: edit the one to keep (only when its text changed), else create it and read back.

        Of several summaries (runs that raced) the one about this head is kept, so racing runs on different heads
        converge on the newest head's (only a run for the current head gets here); the others are removed.
        A POST that lands and then fails is not sent again.
        """
        known = self._seen_summaries.get(str(mr.ref))
        if known is None:
            known = self._summaries(mr.ref)
        keeper = self._keeper(known, mr.head_sha)
        self._drop_summaries(mr, [c for c in known if c is not keeper], result)
        if keeper is not None and self._edit_summary(mr, keeper, body):
            result.summary_url = keeper.get("html_url") or ""
            self._seen_summaries[str(mr.ref)] = [keeper]
            return
        issue = self._repo(mr.ref.repo).get_issue(mr.ref.number)
        created = self._call("posting the summary", lambda: issue.create_comment(body), write=True,
                             landed=lambda: bool(self._summaries(mr.ref)))
        self._check_author(created.user.login if created is not None and created.user else None)
        found = self._summaries(mr.ref)
        keeper = self._keeper(found, mr.head_sha)
        self._drop_summaries(mr, [c for c in found if c is not keeper], result)
        self._seen_summaries[str(mr.ref)] = [keeper] if keeper else []
        result.summary_url = keeper.get("html_url") or "" if keeper else ""

    def _drop_summaries(self, mr: MergeRequest, extras: list[dict[str, Any]], result: ApplyResult) -> None:
        for extra in extras:
            if self._delete(mr, "issues", str(extra["id"])):
                result.notes.append(f"summary {extra['id']} removed: a second summary (two runs overlapped)")

    def _edit_summary(self, mr: MergeRequest, current: dict[str, Any], body: str) -> bool:
        """Edit the summary in place when its text changed; False when it is gone (then it is created anew)."""
        if current.get("body") == body:
            return True
        url = f"/repos/{mr.ref.repo}/issues/comments/{current['id']}"
        try:
            self._call("editing the summary", lambda: self._gh.requester.requestJsonAndCheck(
                "PATCH", url, input={"body": body}), write=True)
        except HostError as exc:  # GitHubAPIError carries the status
            if getattr(exc, "status", None) != 404:
                raise
            return False
        current["body"] = body
        return True
