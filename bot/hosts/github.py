"""GitHub pull requests through PyGithub — the only module that imports it.

Why it looks the way it does:
- **One batched review per run** (``POST pulls/{n}/reviews``, event COMMENT) keeps within GitHub's
  content-creation limits; existing comments are edited in place; the summary is one issue comment.
- **Idempotent and crash-safe**: every Sieve comment carries a hidden marker, and the existing comments are
  re-read right before the review is posted, so a run that dies between two writes and is run again ends
  like one clean run. Comments are never deleted: a vanished finding's comment is marked outdated.
- **Never lose a comment**: a 422 for a line GitHub does not accept is narrowed down by bisection; those
  comments become file-level comments, and where that fails too, a section of the summary.
- **Faults**: PyGithub's own retries and request pacing are switched off so that one place here decides:
  ``Retry-After`` / ``x-ratelimit-reset`` are honoured, secondary limits back off, 5xx and timeouts are
  retried a bounded number of times, then a :class:`HostError` without the token in it.
- Requests are counted at the HTTP layer (a urllib3 ``Retry`` hook that sees every response and error),
  so ``ApplyResult.api_calls``/``writes`` are measured, not estimated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException
from urllib3.util.retry import Retry

from bot import comments
from bot.errors import ConfigError, HostError, RateLimitError, redact
from bot.hosts.base import HOSTS, ApplyResult, CommentFeedback, MergeRequest, MergeRequestRef, Reply, StatusSpec, Vote
from bot.hosts.options import GitHubOptions
from bot.plan import ExistingComment, PlannedComment, ReviewPlan
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

T = TypeVar("T")
ACTIONS_BOT = "github-actions[bot]"  # the author of everything an Actions GITHUB_TOKEN writes
DIFF_MEDIA_TYPE = "application/vnd.github.diff"
_MAX_READ_BYTES = 1_000_000


@dataclass
class CallCounter:
    """Requests seen at the HTTP layer (every response and every failed attempt)."""

    calls: int = 0
    writes: int = 0
    log: list[tuple[str, int | str]] = field(default_factory=list)

    def record(self, method: str | None, outcome: int | str) -> None:
        self.calls += 1
        if (method or "GET").upper() not in ("GET", "HEAD"):
            self.writes += 1
        self.log.append(((method or "GET").upper(), outcome))


class _CountingRetry(Retry):
    """urllib3 consults this for every response (``is_retry``) and every error (``increment``).

    It never retries by itself (total=0, read=False: errors surface at once) — it only counts.
    """

    counter: CallCounter

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        self.counter.record(method, status_code)
        return False

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if error is not None:
            self.counter.record(method, type(error).__name__)
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def new(self, **kw: Any) -> _CountingRetry:
        fresh = super().new(**kw)
        fresh.counter = self.counter
        return fresh


class GitHubAPIError(HostError):
    """GitHub answered with an error status (kept so callers can tell a 422 from a 403)."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)


@dataclass(frozen=True)
class _Failure:
    """Why one attempt failed, and whether/when to try again."""

    status: int | None
    message: str
    wait: float | None  # None: do not retry
    ambiguous: bool = False  # a write may have landed (timeout, reset, 5xx)


class GitHubHost:
    """GitHub through PyGithub. Configuration is passed in; nothing is read from the environment here."""

    name = "github"

    def __init__(self, token: str, *, base_url: str = "https://api.github.com", timeout: float = 30.0,
                 max_retries: int = 4, write_pause: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 bot_login: str | None = None,
                 trusted_users: tuple[str, ...] = (), backoff: float = 1.0, secondary_wait: float = 60.0,
                 max_wait: float = 900.0, per_page: int = 100) -> None:
        if not token:
            raise ConfigError("no GitHub token given", hint="set GITHUB_TOKEN to a token that can read the repository")
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.max_retries, self.write_pause, self.sleep = max_retries, write_pause, sleep
        self.backoff, self.secondary_wait, self.max_wait = backoff, secondary_wait, max_wait
        self.trusted_users = tuple(u.lower() for u in trusted_users)
        self._write_access: dict[tuple[str, str], bool] = {}  # (repo, login) → may write; one lookup per run
        self.counter = CallCounter()
        retry = _CountingRetry(total=0, read=False, redirect=0, raise_on_status=False)
        retry.counter = self.counter
        self._gh = Github(auth=Auth.Token(token), base_url=self.base_url, timeout=max(1, math.ceil(timeout)), retry=retry,
                          per_page=per_page, seconds_between_requests=None, seconds_between_writes=None)
        self._lazy = self._gh.withLazy(True)
        self.per_page = per_page
        self._bot_login = bot_login or None
        self._last_write = float("-inf")

    # ------------------------------------------------------------------ faults and retries
    def _error(self, what: str, failure: _Failure) -> GitHubAPIError:
        """One error per failure, with what to do; the token is removed from every message."""
        text = redact(f"GitHub {what} failed" + (f" ({failure.status})" if failure.status else "")
                      + f": {failure.message}", (self._token,))
        status = failure.status
        if status == 403 and "not accessible" in failure.message.lower():
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
            hint = "GitHub did not answer in time after retries; run again later"
        return GitHubAPIError(redact(text, (self._token,)), status=status, hint=hint)

    def _classify(self, exc: Exception, attempt: int) -> _Failure:
        """Map an exception to a retry decision (statuses map to decisions here and nowhere else)."""
        if isinstance(exc, requests.exceptions.Timeout):
            return _Failure(None, "timed out", self.backoff * 2 ** attempt, ambiguous=True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            return _Failure(None, "connection failed", self.backoff * 2 ** attempt, ambiguous=True)
        assert isinstance(exc, GithubException)
        data = exc.data if isinstance(exc.data, dict) else {}
        message = str(data.get("message") or exc.message or "")
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        status = exc.status
        limited = status == 429 or (status == 403 and ("rate limit" in message.lower()
                                                        or headers.get("x-ratelimit-remaining") == "0"))
        if limited:
            return _Failure(status, message or "rate limited", self._limit_wait(headers, attempt))
        if status >= 500:
            return _Failure(status, message or "server error", self.backoff * 2 ** attempt, ambiguous=True)
        detail = "; ".join(str(e.get("message", e.get("code", e)) if isinstance(e, dict) else e)
                           for e in data.get("errors") or [])
        return _Failure(status, f"{message}: {detail}" if detail else message, None)

    def _limit_wait(self, headers: dict[str, str], attempt: int) -> float:
        """Retry-After first, then the primary limit's reset time, else the secondary-limit back-off."""
        if headers.get("retry-after", "").strip().isdigit():
            return float(headers["retry-after"])
        reset = headers.get("x-ratelimit-reset", "")
        if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
            return max(1.0, int(reset) - time.time() + 1.0)
        return self.secondary_wait * 2 ** attempt

    def _call(self, what: str, fn: Callable[[], T], *, write: bool = False,
              landed: Callable[[], bool] | None = None) -> T:
        """Run one API operation with bounded retries. ``landed`` tells whether an ambiguous write took effect."""
        for attempt in range(self.max_retries + 1):
            if write:
                self._pace()
            try:
                return fn()
            except (GithubException, requests.exceptions.RequestException) as exc:
                failure = self._classify(exc, attempt)
            finally:
                if write:
                    self._last_write = time.monotonic()
            if failure.wait is None or attempt >= self.max_retries:
                break
            if failure.wait > self.max_wait:
                raise RateLimitError(f"GitHub {what}: rate limited for {failure.wait:.0f} s more",
                                     status=failure.status, hint="run again after the limit resets")
            self.sleep(failure.wait)
            if write and failure.ambiguous and landed is not None and landed():
                return None  # type: ignore[return-value]
        if failure.status in (403, 429) and failure.wait is not None:
            raise RateLimitError(redact(f"GitHub {what}: still rate limited after {self.max_retries} retries "
                                        f"({failure.message})", (self._token,)), status=failure.status,
                                 hint="run again later or lower the request volume")
        raise self._error(what, failure)

    def _pace(self) -> None:
        """Keep ``write_pause`` seconds between writes (GitHub's content-creation limits)."""
        gap = self.write_pause - (time.monotonic() - self._last_write)
        if gap > 0:
            self.sleep(gap)

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
        installation token writes as ``<app-slug>[bot]``, which GitHub will not tell it: configure ``bot_login``."""
        if self._bot_login is None:
            try:
                self._bot_login = self._call("reading the token's user", lambda: self._gh.get_user().login)
            except GitHubAPIError as exc:
                if exc.status != 403:
                    raise
                self._bot_login = ACTIONS_BOT
        return self._bot_login

    def identity(self) -> comments.Identity:
        return comments.Identity(self.bot_login())

    def fetch(self, ref: MergeRequestRef) -> MergeRequest:
        pr = self._pull(ref)
        diff = self._diff(ref, pr)
        existing = self._existing(ref)
        summary = self._summary(ref)
        head_repo = pr.head.repo.full_name if pr.head.repo else None
        return MergeRequest(ref=ref, title=pr.title or "", base_sha=pr.base.sha, head_sha=pr.head.sha,
                            start_sha=pr.base.sha, diff=diff, existing=tuple(existing),
                            summary_id=str(summary["id"]) if summary else None,
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
        """Sieve's own finding comments (written by its identity, with its marker), with whether anyone replied."""
        listed = self._review_comments(ref)
        replied = {c.get("in_reply_to_id") for c in listed if c.get("in_reply_to_id")}
        me = self.identity()
        found = (comments.read(c["id"], _login(c), c.get("body"), me, path=c.get("path"),
                               line=c.get("line") or c.get("original_line"), has_replies=c["id"] in replied,
                               resolved=OUTDATED_MARK in (c.get("body") or ""))
                 for c in listed if not c.get("in_reply_to_id"))
        return [c for c in found if c.finding]

    def _summary(self, ref: MergeRequestRef) -> dict[str, Any] | None:
        me = self.identity()
        for c in self._pages(f"listing comments of {ref}", f"/repos/{ref.repo}/issues/{ref.number}/comments"):
            if comments.read(c["id"], _login(c), c.get("body"), me).summary:
                return c
        return None

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
        start_calls, start_writes = self.counter.calls, self.counter.writes
        result = ApplyResult()
        pr = self._lazy_pull(mr.ref)
        on_host = {c.marker.fingerprint for c in self._existing(mr.ref)}
        fresh = [c for c in plan.create if c.fingerprint not in on_host]
        result.notes += [f"{len(plan.create) - len(fresh)} comment(s) were already posted (an earlier run)"] \
            if len(fresh) < len(plan.create) else []
        unplaced = [c for c in self._post_review(mr, pr, fresh, result) if not self._file_level(mr, pr, c, result)]
        result.to_summary = len(unplaced)
        for update in plan.update:
            if self._edit_review_comment(mr, update.existing, update.comment.body, result):
                result.updated += 1
        for resolve in plan.resolve:
            if self._edit_review_comment(mr, resolve.existing, outdated_body(resolve.existing.body,
                                                                             resolve.reason), result):
                result.resolved += 1
        self._upsert_summary(mr, summary_with(plan.summary, unplaced), result)
        if status is not None:
            self._set_status(mr, status)
        result.api_calls = self.counter.calls - start_calls
        result.writes = self.counter.writes - start_writes
        return result

    def _post_review(self, mr: MergeRequest, pr: Any, comments: list[PlannedComment],
                     result: ApplyResult) -> list[PlannedComment]:
        """Post the comments as one review; on a line 422, bisect. Returns the comments GitHub refused."""
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

    def _create_review(self, mr: MergeRequest, pr: Any, comments: list[PlannedComment]) -> None:
        payload = [review_comment_payload(c) for c in comments]
        wanted = {c.fingerprint for c in comments}

        def landed() -> bool:
            present = {c.marker.fingerprint for c in self._existing(mr.ref)}
            return wanted <= present

        self._call(f"posting the review on {mr.ref}", lambda: pr.create_review(
            commit=self._repo(mr.ref.repo).get_commit(mr.head_sha),
            body=f"Sieve: {len(comments)} comment(s); counts and details are in the summary comment.",
            event="COMMENT", comments=payload), write=True, landed=landed)

    def _file_level(self, mr: MergeRequest, pr: Any, comment: PlannedComment, result: ApplyResult) -> bool:
        """Fallback for a line GitHub refused: a comment on the whole file (``subject_type: file``)."""
        anchor = comment.finding.anchor
        note = f"_(GitHub would not place this on line {anchor.line}, so it is on the file)_\n\n"
        try:
            self._call(f"posting a file-level comment on {anchor.path}", lambda: pr.create_review_comment(
                note + comment.body, mr.head_sha, anchor.path, subject_type="file"), write=True)
        except GitHubAPIError as exc:
            if exc.status != 422:
                raise
            result.notes.append(f"{anchor.path}:{anchor.line}: moved to the summary ({exc})")
            return False
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

    def _upsert_summary(self, mr: MergeRequest, body: str, result: ApplyResult) -> None:
        """Create the summary once; afterwards edit it in place, and only when it changed."""
        current = self._summary(mr.ref)
        if current is not None:
            result.summary_url = current.get("html_url") or ""
            if current.get("body") != body:
                url = f"/repos/{mr.ref.repo}/issues/comments/{current['id']}"
                self._call("editing the summary", lambda: self._gh.requester.requestJsonAndCheck(
                    "PATCH", url, input={"body": body}), write=True)
            return
        issue = self._repo(mr.ref.repo).get_issue(mr.ref.number)
        created = self._call("posting the summary", lambda: issue.create_comment(body), write=True)
        result.summary_url = created.html_url if created is not None else ""
        author = created.user.login if created is not None and created.user else ""
        if author and not self.identity().is_self(author):
            result.notes.append(f"this token writes as {author}, not as {self.bot_login()}: set github.bot_login = "
                                f"\"{author}\" ([github] table of .sieve.toml), or every run starts afresh")

    def _set_status(self, mr: MergeRequest, status: StatusSpec) -> None:
        """Commit status "sieve"; skipped when the same state and text are already set."""
        commit = self._repo(mr.ref.repo).get_commit(mr.head_sha)
        combined = self._call("reading the commit status", lambda: commit.get_combined_status())
        for s in combined.statuses:
            if s.context == status.context and s.state == status.state and s.description == status.description:
                return
        self._call("setting the commit status", lambda: commit.create_status(
            state=status.state, description=status.description[:140], context=status.context), write=True)

    # ------------------------------------------------------------------ feedback
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
        me = self.identity()
        for c in listed:
            record = comments.read(c["id"], _login(c), c.get("body"), me)
            if c.get("in_reply_to_id") or not record.finding:
                continue
            yield CommentFeedback(host="github", repo=repo, number=_pr_number(c.get("pull_request_url")),
                                  url=c.get("html_url") or "", comment=record,
                                  votes=tuple(self._votes(repo, c, me)),
                                  replies=tuple(self._replies(repo, replies.get(c["id"], []), me)),
                                  created_at=c.get("created_at") or "")

    def may_write(self, repo: str, login: str) -> bool:
        """Is this user's feedback trusted? In ``trusted_users``, or write access (admin, maintain, write) by
        ``GET collaborators/{username}/permission``. Looked up once per user and run."""
        key = login.lower()
        if key in self.trusted_users:
            return True
        if (repo, key) not in self._write_access:
            path = f"/repos/{repo}/collaborators/{quote(login, safe='')}/permission"
            try:
                _, data = self._call(f"reading the permission of {login} on {repo}",
                                     lambda: self._gh.requester.requestJsonAndCheck("GET", path))
                allowed = isinstance(data, dict) and data.get("permission") in ("admin", "write")
            except GitHubAPIError as exc:
                if exc.status == 403:
                    raise GitHubAPIError(str(exc).split(" — ")[0], status=403, hint=(
                        "the token may not read collaborator permissions (it needs metadata: read); "
                        "or list the trusted voters in [github] trusted_users")) from None
                if exc.status != 404:
                    raise
                allowed = False  # no such user: nobody to trust
            self._write_access[(repo, key)] = allowed
        return self._write_access[(repo, key)]

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
            votes.append(Vote(user=login, content=r["content"], trusted=self.may_write(repo, login),
                              created_at=r.get("created_at") or "", id=str(r.get("id", ""))))
        return votes

    def _replies(self, repo: str, listed: list[dict[str, Any]], me: comments.Identity) -> list[Reply]:
        return [Reply(user=_login(c), body=c.get("body") or "", trusted=self.may_write(repo, _login(c)),
                      created_at=c.get("created_at") or "", id=str(c["id"]))
                for c in listed if _login(c) and not me.is_self(_login(c))]


HOSTS.add("github", GitHubHost, GitHubOptions)
