"""GitHub pull requests through PyGithub — the only module that imports it.

Why it looks the way it does:
- **One batched review per run** (``POST pulls/{n}/reviews``, event COMMENT) keeps within GitHub's
  content-creation limits; existing comments are edited in place; the summary is one issue comment.
- **Idempotent, crash-safe, race-safe**: every Sieve comment carries a hidden, sealed marker (bot.markers.Seal:
  under ``github-actions[bot]`` other workflows' comments are not Sieve's even when they end with a marker).
  Every creation is read back right after it is made (and a write whose result is unknown before it is sent
  again), so a run that dies between two writes and is run again ends like one clean run, and two runs on the
  same pull request end with one copy of each comment and one summary. A duplicate is removed only when nobody
  reacted to or replied on it (a person's 👍 is feedback; it is never deleted), and of racing runs on different
  heads the newest head's summary wins: a run whose head is no longer the pull request's writes neither
  summary nor status. Otherwise comments are never deleted: a vanished finding's comment is marked outdated.
- **Never lose a comment**: a 422 for a line (or a body) GitHub does not accept is narrowed down by bisection;
  those comments become file-level comments, and where that fails too, a section of the summary.
- **Faults**: PyGithub's own retries and request pacing are switched off; :mod:`bot.http` decides
  (``Retry-After`` / ``x-ratelimit-reset``, secondary limits, 5xx, timeouts, a deadline per request), then a
  :class:`HostError` without the token in it. Its transport is mounted on PyGithub's session, so every request
  is counted (``counters``; ``ApplyResult.api_calls``/``writes`` are measured, not estimated).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException

from bot import comments, http, markers
from bot.errors import ConfigError, HostError, RateLimitError, redact
from bot.hosts import github_entry, github_trust  # noqa: F401  (github_entry registers this host)
from bot.hosts.base import ApplyResult, MergeRequest, MergeRequestRef, StatusSpec
from bot.hosts.github_feedback import FeedbackReader
from bot.hosts.github_summary import SummaryWriter
from bot.hosts.github_text import (  # noqa: F401  (re-exported: the public helpers of this host)
    OUTDATED_MARK,
    _is_line_error,
    _iso,
    _login,
    _next_link,
    _pr_number,
    outdated_body,
    parse_github_ref,
    ref_from_actions_env,
    review_comment_payload,
    summary_with,
)
from bot.plan import ExistingComment, PlannedComment, ReviewPlan

T = TypeVar("T")
ACTIONS_BOT = "github-actions[bot]"  # the author of everything an Actions GITHUB_TOKEN writes
DIFF_MEDIA_TYPE = "application/vnd.github.diff"
_MAX_READ_BYTES = 1_000_000


class GitHubAPIError(HostError):
    """GitHub answered with an error status (kept so callers can tell a 422 from a 403)."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)


class GitHubHost(SummaryWriter, FeedbackReader):
    """GitHub through PyGithub. Configuration is passed in; nothing is read from the environment here."""

    name = "github"

    def __init__(self, token: str, *, base_url: str = "https://api.github.com", timeout: float = 30.0,
                 max_retries: int = 4, write_pause: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 bot_login: str | None = None,
                 trusted_users: tuple[int, ...] = (), backoff: float = 1.0, secondary_wait: float = 60.0,
                 max_wait: float = http.MAX_WAIT, per_page: int = 100, marker_key: str = "") -> None:
        if not token:
            raise ConfigError("no GitHub token given", hint="set GITHUB_TOKEN to a token that can read the repository")
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.sleep = sleep
        self.trusted_users = tuple(trusted_users)  # numeric user ids: a login can be renamed and taken over
        self.trust = github_trust.Trust(self.trusted_users, self._read_permission)
        self.policy = http.Policy(retries=max_retries, backoff=backoff, limit_backoff=secondary_wait,
                                  max_wait=max_wait, write_pause=write_pause, timeout=timeout)
        self.counters = http.Counters()
        self._gh = Github(auth=Auth.Token(token), base_url=self.base_url, timeout=max(1, math.ceil(timeout)), retry=0,
                          per_page=per_page, seconds_between_requests=None, seconds_between_writes=None)
        self._lazy = self._gh.withLazy(True)
        # PyGithub's sessions get Sieve's transport (one for both clients: one pacer, one set of counters)
        adapter = http.PolicyAdapter(self.policy, self.counters, sleep=sleep)
        for client in (self._gh, self._lazy):
            connection = client.requester._Requester__createConnection()  # PyGithub has no public hook for this
            connection.session.mount("http://", adapter)
            connection.session.mount("https://", adapter)
        self.per_page = per_page
        self._bot_login = bot_login or None
        self._login_checked = False  # the configured bot_login was compared with what the token writes as
        self._marker_key = marker_key.encode()
        self._seen_summaries: dict[str, list[dict[str, Any]]] = {}  # ref → the summaries the last read found

    # ------------------------------------------------------------------ faults and retries
    def _error(self, what: str, answer: http.Answer, verdict: http.Verdict, attempts: int) -> HostError:
        """One error per failure, with what to do; the token is removed from every message."""
        status, message = answer.status, answer.message
        if verdict.kind == "limited":
            waited = (f"asks to wait {verdict.wait:.0f} s, over the {self.policy.max_wait:.0f} s cap"
                      if verdict.too_long else f"still rate limited after {attempts} attempt(s)")
            return RateLimitError(redact(f"GitHub {what}: {waited} ({message})", (self._token,)), status=status,
                                  hint="run again after the limit resets, or lower the request volume")
        text = redact(f"GitHub {what} failed" + (f" ({status})" if status else "") + f": {message}", (self._token,))
        if status == 403 and "not accessible" in message.lower():
            hint = ("the token is read-only here (pull requests from forks get one): use the fork-safe "
                    "workflow in docs/github.md, or run with --dry-run")
        elif status == 401:
            hint = "check that GITHUB_TOKEN is set and valid"
        elif status in (403, 404):
            hint = ("check the repository name and that the token may read it and write pull-request comments "
                    "(workflow permissions: pull-requests: write, contents: read)")
        elif status is not None and status < 500:
            hint = "GitHub refused the request as sent; this is likely a bug in Sieve — please report it"
        else:
            hint = f"GitHub did not answer in time after {attempts} attempt(s); run again later"
        return GitHubAPIError(text, status=status, hint=hint)

    @staticmethod
    def _answer(exc: Exception) -> http.Answer | None:
        """Read a PyGithub / transport exception as a neutral answer (None: not an HTTP failure)."""
        if isinstance(exc, http.AmbiguousWrite):
            return exc.answer
        if isinstance(exc, http.DeadlineExceeded):
            return http.Answer(failure="deadline", message=str(exc))
        if isinstance(exc, requests.exceptions.Timeout):
            return http.Answer(failure="timeout", message="timed out")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return http.Answer(failure="connection", message="connection failed")
        if not isinstance(exc, GithubException):
            return None
        data = exc.data if isinstance(exc.data, dict) else {}
        message = str(data.get("message") or exc.message or "")
        detail = "; ".join(str(e.get("message", e.get("code", e)) if isinstance(e, dict) else e)
                           for e in data.get("errors") or [])
        return http.Answer(exc.status, dict(exc.headers or {}), f"{message}: {detail}" if detail else message)

    def _call(self, what: str, fn: Callable[[], T], *, write: bool = False,
              landed: Callable[[], bool] | None = None) -> T:
        """One API operation under the HTTP policy. ``landed`` tells whether a write whose result is unknown
        (timeout, reset, 5xx) took effect; then it is not sent again (and None is returned)."""
        return http.run(fn, self.policy, classify=self._answer, sleep=self.sleep, counters=self.counters,
                        fail=lambda answer, verdict, n: self._error(what, answer, verdict, n),
                        landed=landed if write else None)  # type: ignore[return-value]

    def _pages(self, what: str, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every page of a list endpoint, following Link ``rel="next"``, as plain dicts.

        PyGithub's list objects fetch an item again whenever a field is absent (``in_reply_to_id`` is absent
        on every top-level comment), so lists are read here through its requester instead: one call a page.
        """
        items: list[dict[str, Any]] = []
        url: str | None = path
        query: dict[str, Any] | None = {"per_page": self.per_page, **(params or {})}
        while url:
            headers, data = self._call(what, lambda u=url, q=query: self._gh.requester.requestJsonAndCheck(
                "GET", u, parameters=q))
            items.extend(data or [])
            url, query = _next_link(headers.get("link", "")), None
        return items

    # ------------------------------------------------------------------ reading
    def _repo(self, repo: str) -> Any:
        """A repository object that makes no request until used (saves one call per operation)."""
        return self._lazy.get_repo(repo)

    def _lazy_pull(self, ref: MergeRequestRef) -> Any:
        return self._lazy.get_repo(ref.repo).get_pull(ref.number)

    def _pull(self, ref: MergeRequestRef) -> Any:
        pull = self._lazy_pull(ref)
        self._call(f"reading {ref}", pull.complete)
        return pull

    def bot_login(self) -> str:
        """The login Sieve writes as: ``bot_login`` when configured, else the token's user; a token that may not
        read ``GET /user`` (403: an Actions ``GITHUB_TOKEN``) writes as ``github-actions[bot]``. A GitHub App's
        installation token writes as ``<app-slug>[bot]``, which GitHub will not tell it: configure ``bot_login``.
        A configured ``bot_login`` that the token can be seen not to write as stops the run before any write."""
        if self._bot_login is None:
            self._bot_login = self._token_login() or ACTIONS_BOT
            self._login_checked = True
        elif not self._login_checked:
            self._login_checked = True
            actual = self._token_login()
            if actual and not comments.Identity(self._bot_login).is_self(actual):
                raise self._wrong_login(actual)
        return self._bot_login

    @property
    def configured_login(self) -> str | None:
        """``bot_login`` as configured (None: asked from the token); read without any request."""
        return self._bot_login

    def _token_login(self) -> str | None:
        """The token's own user, or None when the token may not read ``GET /user`` (Actions, GitHub Apps)."""
        try:
            return self._call("reading the token's user", lambda: self._gh.get_user().login)
        except GitHubAPIError as exc:
            if exc.status != 403:
                raise
            return None

    def _wrong_login(self, actual: str) -> ConfigError:
        return ConfigError(f"the token writes as {actual}, not as the configured bot_login {self._bot_login}, so Sieve "
                           "would not recognise its own comments and would post them again on every run",
                           hint=f'set github.bot_login = "{actual}" ([github] table of .sieve.toml), or remove it')

    def _check_author(self, author: str | None) -> None:
        """After a write: the comment must be by the identity Sieve reads as its own, else stop (one line)."""
        if author and not comments.Identity(self.bot_login()).is_self(author):
            raise self._wrong_login(author)

    def _check_sealed_authors(self, listed: list[dict[str, Any]], me: comments.Identity) -> None:
        """Comments sealed for this repository but written by another app account mean the token writes as that
        account, not as the configured ``bot_login``: stop before writing anything that would duplicate them.
        (Only ``[bot]`` accounts count: those are apps the repository installed, never a passing stranger.)"""
        for c in listed:
            author = _login(c)
            if author.endswith("[bot]") and not me.is_self(author) and me.seal.verify(c.get("body") or ""):
                raise self._wrong_login(author)

    def identity(self, repo: str) -> comments.Identity:
        """Sieve's identity in ``repo``: its login and the seal its comments there carry."""
        return comments.Identity(self.bot_login(), markers.Seal("github", self._marker_key))

    def fetch(self, ref: MergeRequestRef) -> MergeRequest:
        pr = self._pull(ref)
        diff = self._diff(ref, pr)
        existing = self._existing(ref)
        summary = self._keeper(self._summaries(ref), pr.head.sha)
        head_repo = pr.head.repo.full_name if pr.head.repo else None
        return MergeRequest(ref=ref, title=pr.title or "", base_sha=pr.base.sha, head_sha=pr.head.sha,
                            start_sha=pr.base.sha, diff=diff, existing=tuple(existing),
                            summary_id=str(summary["id"]) if summary else None,
                            summary_state=markers.summary_data(summary["body"]) if summary else markers.SummaryData(),
                            is_fork=head_repo != pr.base.repo.full_name, web_url=pr.html_url or "",
                            author=pr.user.login if pr.user else "")

    def _diff(self, ref: MergeRequestRef, pr: Any) -> bytes:
        """The diff media type (PyGithub has no call for it: its requester with our Accept header)."""
        url = f"/repos/{ref.repo}/pulls/{ref.number}"
        _, data = self._call(f"reading the diff of {ref}", lambda: self._gh.requester.requestJsonAndCheck(
            "GET", url, headers={"Accept": DIFF_MEDIA_TYPE}))
        text = data.get("data", "") if isinstance(data, dict) else ""
        return text.encode("utf-8", "surrogateescape")

    def _review_comments(self, ref: MergeRequestRef) -> list[dict[str, Any]]:
        return self._pages(f"listing review comments of {ref}", f"/repos/{ref.repo}/pulls/{ref.number}/comments")

    def _existing(self, ref: MergeRequestRef) -> list[ExistingComment]:
        """Sieve's own finding comments (its identity, its seal), with whether anyone replied or reacted."""
        listed = self._review_comments(ref)
        replied = {c.get("in_reply_to_id") for c in listed if c.get("in_reply_to_id")}
        me = self.identity(ref.repo)
        self._check_sealed_authors(listed, me)
        found = (comments.read(c["id"], _login(c), c.get("body"), me, path=c.get("path"),
                               line=c.get("line") or c.get("original_line"), has_replies=c["id"] in replied,
                               resolved=OUTDATED_MARK in (c.get("body") or ""),
                               reacted=bool((c.get("reactions") or {}).get("total_count")))
                 for c in listed if not c.get("in_reply_to_id"))
        return [c for c in found if c.finding]

    def _head(self, ref: MergeRequestRef) -> str:
        """The pull request's head commit now (one request)."""
        url = f"/repos/{ref.repo}/pulls/{ref.number}"
        _, data = self._call(f"reading the head of {ref}", lambda: self._gh.requester.requestJsonAndCheck("GET", url))
        return str(((data or {}).get("head") or {}).get("sha") or "")

    def read_file(self, mr: MergeRequest, path: str) -> bytes | None:
        """A file at the head commit; None when it is absent, a directory, binary-only or too big."""
        try:
            content = self._call(f"reading {path}", lambda: self._repo(mr.ref.repo).get_contents(
                path, ref=mr.head_sha))
        except HostError:
            return None
        if isinstance(content, list) or content.type != "file" or (content.size or 0) > _MAX_READ_BYTES:
            return None
        try:
            return content.decoded_content
        except (AssertionError, ValueError, TypeError):
            return None

    # ------------------------------------------------------------------ writing
    def apply(self, mr: MergeRequest, plan: ReviewPlan, status: StatusSpec | None = None) -> ApplyResult:
        """Post the new comments as one review, edit and mark outdated, then the summary and the status.

        A run whose head is no longer the pull request's (a newer push came in) writes nothing: the newer run
        owns the comments, the summary and the status. Runs may race: every creation is read back right after it
        is made, and where two runs posted the same finding the copy nobody reacted to or replied on is removed.
        A write whose result is unknown (timeout, reset, 5xx) is checked the same way before it is sent again.
        """
        start_calls, start_writes = self.counters.api_calls, self.counters.writes
        result = ApplyResult()
        seal = self.identity(mr.ref.repo).seal
        if self._moved_on(mr, result):
            return result.counted(self.counters, start_calls, start_writes)
        pr = self._lazy_pull(mr.ref)
        fresh = [replace(c, body=seal.seal(c.body)) for c in plan.create]
        unplaced = self._post_review(mr, pr, fresh, result)
        on_host = self._settle(mr, result) if fresh else self._drop_duplicates(mr, list(mr.existing), result)
        unplaced = [c for c in unplaced if c.fingerprint not in on_host]
        unplaced = [c for c in unplaced if not self._file_level(mr, pr, c, result)]
        if result.file_level:
            self._settle(mr, result)
        result.to_summary = len(unplaced)
        for update in plan.update:
            if self._edit_review_comment(mr, update.existing, seal.seal(update.comment.body), result):
                result.updated += 1
        for resolve in plan.resolve:
            body = seal.seal(outdated_body(resolve.existing.body, resolve.reason))
            if self._edit_review_comment(mr, resolve.existing, body, result):
                result.resolved += 1
        if not self._moved_on(mr, result):
            self._write_summary(mr, plan, unplaced, result)
            if status is not None:
                self._set_status(mr, status)
        return result.counted(self.counters, start_calls, start_writes)

    def _moved_on(self, mr: MergeRequest, result: ApplyResult) -> bool:
        return result.moved_on(mr, self._head(mr.ref))

    def _settle(self, mr: MergeRequest, result: ApplyResult) -> set[str]:
        """Read the bot's comments back after creating some; remove duplicates a racing run made. Fingerprints."""
        return self._drop_duplicates(mr, self._existing(mr.ref), result)

    def _drop_duplicates(self, mr: MergeRequest, found: list[ExistingComment], result: ApplyResult) -> set[str]:
        """Of the copies of one finding, keep every copy a person reacted to or replied on (their feedback lives
        there), or the oldest when nobody did; remove the others. Returns the fingerprints on the host."""
        copies: dict[str, list[ExistingComment]] = {}
        for comment in sorted(found, key=lambda c: int(c.id)):
            if comment.marker is not None:
                copies.setdefault(comment.marker.fingerprint, []).append(comment)
        for group in copies.values():
            keep = [c for c in group if c.signal] or group[:1]
            for comment in group:
                if comment not in keep and self._delete(mr, "pulls", comment.id):
                    result.notes.append(f"comment {comment.id} removed: a copy of comment {keep[0].id} "
                                        "(two runs overlapped)")
        return set(copies)

    def _delete(self, mr: MergeRequest, kind: str, comment_id: str) -> bool:
        """Delete one of the bot's duplicate comments (``kind``: pulls or issues); False when already gone."""
        url = f"/repos/{mr.ref.repo}/{kind}/comments/{comment_id}"
        try:
            self._call(f"removing duplicate comment {comment_id}", lambda: self._gh.requester.requestJsonAndCheck(
                "DELETE", url), write=True)
            return True
        except GitHubAPIError as exc:
            if exc.status == 404:
                return False
            raise

    def _post_review(self, mr: MergeRequest, pr: Any, comments: list[PlannedComment],
                     result: ApplyResult) -> list[PlannedComment]:
        """Post the comments as one review; on a 422 for a line (or a body) GitHub refuses, bisect.
        Returns the comments GitHub refused."""
        if not comments:
            return []
        try:
            self._create_review(mr, pr, comments)
            result.created += len(comments)
            return []
        except GitHubAPIError as exc:
            if not (exc.status == 422 and _is_line_error(str(exc))):
                raise
        if len(comments) == 1:
            return list(comments)
        half = len(comments) // 2
        return (self._post_review(mr, pr, comments[:half], result)
                + self._post_review(mr, pr, comments[half:], result))

    def _on_host(self, mr: MergeRequest, wanted: set[str]) -> Callable[[], bool]:
        def landed() -> bool:
            present = {c.marker.fingerprint for c in self._existing(mr.ref)}
            return wanted <= present
        return landed

    def _create_review(self, mr: MergeRequest, pr: Any, comments: list[PlannedComment]) -> None:
        payload = [review_comment_payload(c) for c in comments]
        review = self._call(f"posting the review on {mr.ref}", lambda: pr.create_review(
            commit=self._repo(mr.ref.repo).get_commit(mr.head_sha),
            body=f"Sieve: {len(comments)} comment(s); counts and details are in the summary comment.",
            event="COMMENT", comments=payload), write=True, landed=self._on_host(mr, {c.fingerprint for c in comments}))
        self._check_author(review.user.login if review is not None and review.user else None)

    def _file_level(self, mr: MergeRequest, pr: Any, comment: PlannedComment, result: ApplyResult) -> bool:
        """Fallback for a line GitHub refused: a comment on the whole file (``subject_type: file``)."""
        anchor = comment.finding.anchor
        note = f"_(GitHub would not place this on line {anchor.line}, so it is on the file)_\n\n"
        body = self.identity(mr.ref.repo).seal.seal(note + comment.body)
        try:
            made = self._call(f"posting a file-level comment on {anchor.path}", lambda: pr.create_review_comment(
                body, mr.head_sha, anchor.path, subject_type="file"), write=True,
                landed=self._on_host(mr, {comment.fingerprint}))
        except GitHubAPIError as exc:
            if exc.status != 422:
                raise
            result.notes.append(f"{anchor.path}:{anchor.line}: moved to the summary ({exc})")
            return False
        self._check_author(made.user.login if made is not None and made.user else None)
        result.file_level += 1
        result.notes.append(f"{anchor.path}:{anchor.line}: posted on the file (line refused by GitHub)")
        return True

    def _edit_review_comment(self, mr: MergeRequest, existing: ExistingComment, body: str,
                             result: ApplyResult) -> bool:
        if existing.body == body:
            return False
        url = f"/repos/{mr.ref.repo}/pulls/comments/{existing.id}"
        try:
            self._call(f"editing comment {existing.id}", lambda: self._gh.requester.requestJsonAndCheck(
                "PATCH", url, input={"body": body}), write=True)
            return True
        except GitHubAPIError as exc:
            if exc.status in (403, 404) and "not accessible" not in str(exc).lower():
                result.notes.append(f"comment {existing.id} could not be edited (not the bot's own?): {exc}")
                return False
            raise

    def _set_status(self, mr: MergeRequest, status: StatusSpec) -> None:
        """Commit status "sieve", read right before it is set and skipped when the same state and text are set."""
        commit = self._repo(mr.ref.repo).get_commit(mr.head_sha)
        combined = self._call("reading the commit status", lambda: commit.get_combined_status())
        ours = [s for s in combined.statuses if s.context == status.context]
        if status.only_to_replace and not ours:
            return
        if any(s.state == status.state and s.description == status.description[:140] for s in ours):
            return
        self._call("setting the commit status", lambda: commit.create_status(
            state=status.state, description=status.description[:140], context=status.context), write=True)

    # ------------------------------------------------------------------ trust (feedback: github_feedback.py)
    def _read_permission(self, repo: str, login: str) -> Any:
        """``GET collaborators/{username}/permission``; ``NOT_FOUND`` for a 404, a clear error for a 403."""
        path = f"/repos/{repo}/collaborators/{quote(login, safe='')}/permission"
        try:
            _, data = self._call(f"reading the permission of {login} on {repo}",
                                 lambda: self._gh.requester.requestJsonAndCheck("GET", path))
            return data
        except GitHubAPIError as exc:
            if exc.status == 403:
                raise GitHubAPIError(str(exc).split(" — ")[0], status=403, hint=(
                    "the token may not read collaborator permissions (it needs metadata: read); "
                    "or list the trusted voters' numeric ids in [github] trusted_users")) from None
            if exc.status != 404:
                raise
            return github_trust.NOT_FOUND
