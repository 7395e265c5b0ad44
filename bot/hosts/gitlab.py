"""GitLab merge requests through python-gitlab (the only module that imports it).

Reads a merge request (``diff_refs``, the per-file diffs reassembled into git-style bytes, Sieve's earlier
discussions and summary note), posts one discussion per new finding with a full ``position``, edits notes in
place, resolves discussions whose finding is gone (never deletes anything), keeps one summary note, and
harvests award emoji and ``/sieve severity`` replies.

Retries, back-off and call counting live in one place, the HTTP adapter below: GitLab's 429 may come without
headers (exponential back-off), ``Retry-After`` / ``RateLimit-Reset`` are honoured when present, 5xx and
timeouts are retried a bounded number of times. python-gitlab's own retry loop is kept out of the way so that
the budget is ours and the sleep can be injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import gitlab
import requests
from requests.adapters import HTTPAdapter

from bot import comments, markers, render
from bot.errors import ConfigError, EndpointError, HostError, RateLimitError, redact
from bot.hosts.base import HOSTS, ApplyResult, CommentFeedback, MergeRequest, MergeRequestRef, Reply, StatusSpec, Vote
from bot.hosts.options import GitLabOptions
from bot.plan import PlannedComment, ReviewPlan
from bot.hosts.gitlab_positions import (  # noqa: F401  (re-exported: the public helpers of this host)
    _FileLines,
    assemble_diff,
    build_position,
    file_position,
    line_code,
    line_maps,
    parse_gitlab_ref,
    ref_from_ci_env,
    url_from_ci_env,
)

DEVELOPER = 30
_EMOJI_VOTES = {"thumbsup": "+1", "thumbsdown": "-1"}
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_WAIT = 60.0


class _GaveUp(requests.RequestException):
    """Raised by the adapter when its retry budget is spent (python-gitlab passes it through untouched)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass
class _Counters:
    api_calls: int = 0
    writes: int = 0
    retries: int = 0
    waits: list[float] = field(default_factory=list)


def _wait_for(headers: Mapping[str, str], attempt: int, now: float) -> float:
    """Seconds to wait before the next attempt: Retry-After, then RateLimit-Reset, else 1, 2, 4 … s."""
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return min(_MAX_WAIT, max(0.0, float(retry_after)))
        except ValueError:
            try:
                return min(_MAX_WAIT, max(0.0, parsedate_to_datetime(retry_after).timestamp() - now))
            except (TypeError, ValueError):
                pass
    reset = headers.get("RateLimit-Reset")
    if reset:
        try:
            return min(_MAX_WAIT, max(0.0, float(reset) - now))
        except ValueError:
            pass
    return min(_MAX_WAIT, float(2 ** attempt))


class _Transport(HTTPAdapter):
    """Counts every HTTP attempt, paces writes and retries 429 / 5xx / timeouts a bounded number of times."""

    def __init__(self, counters: _Counters, *, max_retries: int, write_pause: float,
                 sleep: Callable[[float], None]) -> None:
        super().__init__()
        self.counters = counters
        self.retry_budget = max_retries
        self.write_pause = write_pause
        self.sleep = sleep
        self._wrote = False

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        is_write = request.method not in ("GET", "HEAD")
        for attempt in range(self.retry_budget + 1):
            if is_write and self._wrote and self.write_pause > 0:
                self.sleep(self.write_pause)
            self.counters.api_calls += 1
            self.counters.writes += is_write
            self._wrote = self._wrote or is_write
            last = attempt == self.retry_budget
            try:
                response = super().send(request, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                if last:
                    raise _GaveUp(0, f"{type(exc).__name__} after {attempt + 1} attempt(s)") from None
                self._pause(2.0 ** attempt)
                continue
            if response.status_code not in _RETRY_STATUSES:
                return response
            if last:
                raise _GaveUp(response.status_code, f"HTTP {response.status_code} after {attempt + 1} attempt(s)")
            self._pause(_wait_for(response.headers, attempt, time.time()))
        raise AssertionError("unreachable")  # pragma: no cover

    def _pause(self, seconds: float) -> None:
        self.counters.retries += 1
        self.counters.waits.append(seconds)
        self.sleep(seconds)


def _error(exc: Exception, what: str, secret: str) -> Exception:
    """Map a python-gitlab / transport failure to Sieve's error hierarchy (one place), with no secrets."""
    status = getattr(exc, "status", None) or getattr(exc, "response_code", None)
    detail = redact(str(getattr(exc, "error_message", "") or exc), extra=(secret,))
    if status == 429:
        return RateLimitError(f"GitLab kept rate-limiting {what}: {detail}", status=429,
                              hint="wait a few minutes and run again, or lower the number of comments")
    if status in (401, 403):
        return HostError(f"GitLab refused {what} ({status}): {detail}",
                         hint="use a project access token with the 'api' scope and Developer role in "
                              "SIEVE_GITLAB_TOKEN/GITLAB_TOKEN (CI_JOB_TOKEN cannot post notes)")
    if status == 404:
        return HostError(f"GitLab found nothing for {what} (404)",
                         hint="check the project path and merge request number, and that the token can see it")
    if isinstance(exc, (_GaveUp, requests.RequestException)) or (status or 0) >= 500:
        return EndpointError(f"GitLab did not answer {what}: {detail}", status=status or None,
                             hint="the instance may be down or overloaded; run again later")
    return HostError(f"GitLab failed {what} ({status}): {detail}")


def _needs_line_code(message: str) -> bool:
    return "line_code" in message or "line code" in message



def _encode(project: str) -> str:
    """A project id, or its full path URL-encoded (``group%2Fsub%2Fproject``) as GitLab's API wants."""
    return project if project.isdigit() else quote(project, safe="")


def _notes(discussion: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in discussion.get("notes") or [] if not n.get("system")]


@HOSTS.register("gitlab", options=GitLabOptions)
class GitLabHost:
    """The Host protocol for GitLab (gitlab.com or self-managed) through python-gitlab."""

    name = "gitlab"

    def __init__(self, token: str, *, url: str = "https://gitlab.com", timeout: float = 30.0, max_retries: int = 4,
                 write_pause: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 bot_username: str | None = None, min_trusted_access: int = DEVELOPER) -> None:
        if not token:
            raise ConfigError("no GitLab token given",
                              hint="set GITLAB_TOKEN (a project access token with the 'api' scope)")
        self._token = token
        self.url = url.rstrip("/")
        self.counters = _Counters()
        self.bot_username = bot_username
        self.min_trusted_access = min_trusted_access
        self._trust: dict[int, bool] = {}
        self._summary_bodies: dict[str, str] = {}
        self._line_code_needed = False
        session = requests.Session()
        adapter = _Transport(self.counters, max_retries=max_retries, write_pause=write_pause, sleep=sleep)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._gl = gitlab.Gitlab(self.url, private_token=token, timeout=timeout, session=session, per_page=100)

    # --- plumbing ------------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise _error(exc, what, self._token) from None

    def _list(self, what: str, path: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every page of a list endpoint (python-gitlab follows the pagination links)."""
        return self._call(what, lambda: list(self._gl.http_list(path, query_data=query or {}, iterator=True)))

    def _bot(self) -> comments.Identity:
        """Sieve's identity: the token's own user (asked once when not configured); only its notes are Sieve's."""
        if not self.bot_username:
            me = self._call("reading the token's user", self._gl.http_get, "/user")
            self.bot_username = str(me.get("username") or "") if isinstance(me, dict) else ""
            if not self.bot_username:
                raise HostError("GitLab did not name the token's user, so Sieve cannot tell its own notes apart",
                                hint="use a project or personal access token with the 'api' scope")
        return comments.Identity(self.bot_username)

    def _mr_path(self, ref: MergeRequestRef) -> str:
        return f"/projects/{_encode(ref.repo)}/merge_requests/{ref.number}"

    # --- reading -------------------------------------------------------------------------------------------

    def fetch(self, ref: MergeRequestRef) -> MergeRequest:
        base = self._mr_path(ref)
        mr = self._call(f"reading merge request {ref}", self._gl.http_get, base)
        refs = mr.get("diff_refs") or {}
        if not refs.get("head_sha"):
            raise HostError(f"merge request {ref} has no diff yet (GitLab is still preparing it)",
                            hint="run again in a minute")
        entries = self._diff_entries(base)
        me = self._bot()
        existing, summary_id = [], None
        for discussion in self._list("reading discussions", f"{base}/discussions"):
            notes = _notes(discussion)
            if not notes:
                continue
            first, pos = notes[0], notes[0].get("position") or {}
            record = comments.read(f"{discussion['id']}:{first['id']}", (first.get("author") or {}).get("username"),
                                   first.get("body"), me, path=pos.get("new_path") or pos.get("old_path"),
                                   line=pos.get("new_line") or pos.get("old_line"), has_replies=len(notes) > 1,
                                   resolved=bool(first.get("resolved")))
            if record.summary:
                summary_id = summary_id or str(first["id"])
                self._summary_bodies[str(first["id"])] = record.body
            elif record.finding:
                existing.append(record)
        return MergeRequest(ref=ref, title=mr.get("title", ""), base_sha=refs.get("base_sha", ""),
                            head_sha=refs["head_sha"], start_sha=refs.get("start_sha") or refs.get("base_sha", ""),
                            diff=assemble_diff(entries), existing=tuple(existing), summary_id=summary_id,
                            is_fork=mr.get("source_project_id") != mr.get("target_project_id"),
                            web_url=mr.get("web_url", ""), author=(mr.get("author") or {}).get("username", ""))

    def _diff_entries(self, base: str) -> list[dict[str, Any]]:
        """Per-file diffs: the paginated ``/diffs`` endpoint, or the latest version on instances before 15.7."""
        try:
            return list(self._gl.http_list(f"{base}/diffs", iterator=True))
        except gitlab.exceptions.GitlabHttpError as exc:
            if exc.response_code != 404:
                raise _error(exc, "reading the diff", self._token) from None
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise _error(exc, "reading the diff", self._token) from None
        versions = self._list("reading diff versions", f"{base}/versions")
        if not versions:
            return []
        latest = self._call("reading the latest diff version", self._gl.http_get,
                            f"{base}/versions/{versions[0]['id']}")
        return list(latest.get("diffs") or [])

    def read_file(self, mr: MergeRequest, path: str) -> bytes | None:
        project = self._gl.projects.get(mr.ref.repo, lazy=True)
        try:
            return project.files.raw(file_path=path, ref=mr.head_sha)
        except gitlab.exceptions.GitlabError as exc:
            if getattr(exc, "response_code", None) == 404:
                return None
            raise _error(exc, f"reading {path}", self._token) from None
        except requests.RequestException as exc:
            raise _error(exc, f"reading {path}", self._token) from None

    # --- writing -------------------------------------------------------------------------------------------

    def apply(self, mr: MergeRequest, plan: ReviewPlan, status: StatusSpec | None = None) -> ApplyResult:
        calls, writes = self.counters.api_calls, self.counters.writes
        result = ApplyResult()
        base = self._mr_path(mr.ref)
        files = line_maps(mr.diff)
        leftovers: list[str] = []
        for comment in plan.create:
            self._create(base, mr, comment, files, result, leftovers)
        for update in plan.update:
            discussion, note = update.existing.id.split(":", 1)
            self._call("editing a comment", self._gl.http_put, f"{base}/notes/{note}",
                       post_data={"body": update.comment.body})
            if update.existing.resolved:
                self._call("reopening a discussion", self._gl.http_put, f"{base}/discussions/{discussion}",
                           post_data={"resolved": False})
            result.updated += 1
        for resolve in plan.resolve:
            discussion = resolve.existing.id.split(":", 1)[0]
            self._call("resolving a discussion", self._gl.http_put, f"{base}/discussions/{discussion}",
                       post_data={"resolved": True})
            result.resolved += 1
        result.summary_url = self._summary(base, mr, plan.summary, leftovers)
        if status is not None:
            self._status(mr, status)
        result.api_calls = self.counters.api_calls - calls
        result.writes = self.counters.writes - writes
        return result

    def _post_discussion(self, base: str, body: str, position: dict[str, Any] | None) -> str | None:
        """POST a discussion; the refusal message on a 400 (position not accepted), None on success."""
        data: dict[str, Any] = {"body": body}
        if position is not None:
            data["position"] = position
        try:
            self._gl.http_post(f"{base}/discussions", post_data=data)
            return None
        except gitlab.exceptions.GitlabHttpError as exc:
            if exc.response_code == 400:
                return str(exc.error_message or "refused")
            raise _error(exc, "posting a comment", self._token) from None
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise _error(exc, "posting a comment", self._token) from None

    def _create(self, base: str, mr: MergeRequest, comment: PlannedComment, files: dict[str, _FileLines],
                result: ApplyResult, leftovers: list[str]) -> None:
        """Inline (with line_code if demanded) → file-level → general note → summary. Never lost."""
        anchor = comment.finding.anchor
        position = build_position(comment, mr, files, self._line_code_needed)
        refusal = "line not in the diff" if position is None else self._post_discussion(base, comment.body, position)
        if position is not None and refusal and _needs_line_code(refusal) and not self._line_code_needed:
            retry = build_position(comment, mr, files, True)
            refusal = self._post_discussion(base, comment.body, retry)
            self._line_code_needed = refusal is None
        if refusal is None:
            result.created += 1
            return
        where = render.code(f"{anchor.path}:{anchor.line}")
        result.notes.append(f"{where}: inline position refused ({redact(refusal)}); posted less precisely")
        fallback = f"**{where}** (GitLab could not anchor this comment to the line)\n\n{comment.body}"
        for pos in [p for p in (file_position(comment, mr, files),) if p] + [None]:
            if self._post_discussion(base, fallback if pos is None else comment.body, pos) is None:
                result.created += 1
                result.file_level += 1
                return
        leftovers.append(f"- {where}: {render.inert(comment.finding.review.strip())}")
        result.to_summary += 1

    def _summary(self, base: str, mr: MergeRequest, summary: str, leftovers: list[str]) -> str:
        """Create the summary note once, then edit it in place (no write at all when nothing changed)."""
        body = summary
        if leftovers:
            head = summary.rstrip()
            head = head[: -len(markers.SUMMARY_MARKER)] if markers.is_summary(head) else head
            body = head.rstrip() + "\n\n**Could not be posted inline:**\n" + "\n".join(leftovers) + "\n\n" + \
                markers.SUMMARY_MARKER
        if mr.summary_id:
            if self._summary_bodies.get(mr.summary_id) != body:
                self._call("editing the summary", self._gl.http_put, f"{base}/notes/{mr.summary_id}",
                           post_data={"body": body})
            note_id = mr.summary_id
        else:
            note = self._call("posting the summary", self._gl.http_post, f"{base}/notes", post_data={"body": body})
            note_id = str(note.get("id", ""))
        self._summary_bodies[note_id] = body
        return f"{mr.web_url}#note_{note_id}" if mr.web_url else note_id

    def _status(self, mr: MergeRequest, status: StatusSpec) -> None:
        state = {"failure": "failed"}.get(status.state, status.state)
        self._call("setting the commit status", self._gl.http_post,
                   f"/projects/{_encode(mr.ref.repo)}/statuses/{mr.head_sha}",
                   post_data={"state": state, "name": status.context, "description": status.description[:140],
                              "target_url": mr.web_url or None})

    # --- feedback ------------------------------------------------------------------------------------------

    def _trusted(self, project: str, user_id: int | None) -> bool:
        """Developer (30) or more on the project, inherited memberships included; cached per user."""
        if user_id is None:
            return False
        if user_id not in self._trust:
            try:
                member = self._gl.http_get(f"/projects/{project}/members/all/{user_id}")
                level = int(member.get("access_level", 0)) if isinstance(member, dict) else 0
            except gitlab.exceptions.GitlabHttpError as exc:
                if exc.response_code != 404:
                    raise _error(exc, "reading a member's role", self._token) from None
                level = 0
            except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
                raise _error(exc, "reading a member's role", self._token) from None
            self._trust[user_id] = level >= self.min_trusted_access
        return self._trust[user_id]

    def feedback(self, repo: str, since: str | None = None) -> Iterator[CommentFeedback]:
        """Sieve's notes (found by their markers) in merge requests updated since ``since``, with votes/replies."""
        project = _encode(repo)
        me = self._bot()
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
                votes.append(Vote(user=user.get("username", ""), content=_EMOJI_VOTES[award["name"]],
                                  trusted=self._trusted(project, user.get("id")),
                                  created_at=award.get("created_at", ""), id=str(award.get("id", ""))))
        answers = [Reply(user=(r.get("author") or {}).get("username", ""), body=r.get("body") or "",
                         trusted=self._trusted(project, (r.get("author") or {}).get("id")),
                         created_at=r.get("created_at", ""), id=str(r.get("id", "")))
                   for r in replies if not me.is_self((r.get("author") or {}).get("username"))]
        return CommentFeedback(host="gitlab", repo=repo, number=int(mr["iid"]), comment=record,
                               url=f"{mr.get('web_url', '')}#note_{note['id']}",
                               votes=tuple(votes), replies=tuple(answers), created_at=note.get("created_at", ""))
