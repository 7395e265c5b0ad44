"""GitLab merge requests through python-gitlab (the only module that imports it).

Reads a merge request (``diff_refs``, the per-file diffs reassembled into git-style bytes, Sieve's earlier
discussions and summary note), posts one discussion per new finding with a full ``position``, edits notes in
place, resolves discussions whose finding is gone (never deletes anything) and keeps one summary note; the
harvest of award emoji and ``/sieve severity`` replies is :mod:`bot.hosts.gitlab_feedback`.

Retries, back-off, pacing, call counting and the per-request deadline come from :mod:`bot.http`, whose
transport is mounted on python-gitlab's session: GitLab's 429 may come without headers (exponential back-off),
``Retry-After`` / ``RateLimit-Reset`` are honoured when present, 5xx and timeouts are retried a bounded number
of times. A POST whose result is unknown (5xx, timeout, reset) is not resent blindly: the host reads the merge
request's notes first, and sends it again only if it did not land. Every creation is read back, and where two
runs raced, a copy of a duplicate note is removed only when nobody reacted to or replied on it (the older kept
otherwise), so racing runs agree and no person's 👍 is lost. A run whose head is no longer the merge request's
writes neither summary nor status (the newer run owns them), and of several summaries the one about the newest
head is kept. Every note Sieve writes is sealed (bot.markers.Seal), so a note another job posts under the same
account is never taken for Sieve's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import gitlab
import requests

from bot import comments, http, markers, render
from bot.errors import ConfigError, EndpointError, HostError, RateLimitError, redact
from bot.hosts import gitlab_entry  # noqa: F401  (registers this host)
from bot.hosts.base import ApplyResult, MergeRequest, MergeRequestRef, StatusSpec
from bot.hosts.gitlab_feedback import ACCESS_LEVELS, FeedbackReader, _encode, _notes  # noqa: F401  (re-exported)
from bot.hosts.gitlab_positions import (  # noqa: F401  (re-exported: the public helpers of this host)
    MAX_BODY,
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
from bot.plan import PlannedComment, ReviewPlan

DEVELOPER = 30


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
    if isinstance(exc, requests.RequestException) or (status or 0) >= 500:
        return EndpointError(f"GitLab did not answer {what}: {detail}", status=status or None,
                             hint="the instance may be down or overloaded; run again later")
    return HostError(f"GitLab failed {what} ({status}): {detail}")


def _needs_line_code(message: str) -> bool:
    return "line_code" in message or "line code" in message



def _sieve_note(note: dict[str, Any], replied: bool, me: comments.Identity) -> list[tuple[int, str, bool, str]]:
    """``[(note id, what it is: "summary" or the finding's fingerprint, replied, the summary's head)]`` for a
    note that is Sieve's own (its identity, its seal), else []."""
    record = comments.read(note.get("id"), (note.get("author") or {}).get("username"), note.get("body"), me)
    key = "summary" if record.summary else record.marker.fingerprint if record.finding else None
    return [(int(note["id"]), key, replied, record.summary_data.commit)] if key else []


class GitLabHost(FeedbackReader):
    """The Host protocol for GitLab (gitlab.com or self-managed) through python-gitlab."""

    name = "gitlab"

    def __init__(self, token: str, *, url: str = "https://gitlab.com", timeout: float = 30.0, max_retries: int = 4,
                 write_pause: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 bot_username: str | None = None, min_trusted_access: int = DEVELOPER,
                 trusted_users: tuple[int, ...] = (), marker_key: str = "") -> None:
        if not token:
            raise ConfigError("no GitLab token given",
                              hint="set GITLAB_TOKEN (a project access token with the 'api' scope)")
        self._token = token
        self.url = url.rstrip("/")
        self.policy = http.Policy(retries=max_retries, write_pause=write_pause, timeout=timeout)
        self.counters = http.Counters()
        self.sleep = sleep
        self.bot_username = bot_username
        self._username_checked = False
        self._marker_key = marker_key.encode()
        self.min_trusted_access = min_trusted_access
        self.trusted_users = frozenset(trusted_users)  # numeric user ids: a user name can be renamed and taken over
        self._trust: dict[int, int | None] = {}  # user id → access level on the project (None: unclear answer)
        self._unknown: dict[int, str] = {}  # user id → why GitLab's answer was unclear
        self._summary_bodies: dict[str, str] = {}
        self._line_code_needed = False
        self._seen: dict[str, list[tuple[int, str, bool, str]]] = {}  # ref → Sieve's notes as last read
        session = http.requests_session(self.policy, self.counters, sleep=sleep, retry=True)
        self._gl = gitlab.Gitlab(self.url, private_token=token, timeout=timeout, session=session, per_page=100)

    # --- plumbing ------------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise _error(exc, what, self._token) from None

    def _unless_absent(self, what: str, fn: Callable[[], Any], absent: Any) -> Any:
        """``fn()``, or ``absent`` when GitLab answers 404 (the thing is gone, or the user is no member)."""
        try:
            return fn()
        except gitlab.exceptions.GitlabHttpError as exc:
            if exc.response_code == 404:
                return absent
            raise _error(exc, what, self._token) from None
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise _error(exc, what, self._token) from None

    def _list(self, what: str, path: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every page of a list endpoint (python-gitlab follows the pagination links)."""
        return self._call(what, lambda: list(self._gl.http_list(path, query_data=query or {}, iterator=True)))

    def _bot(self, repo: str) -> comments.Identity:
        """Sieve's identity in ``repo``: the token's own user (asked once; a configured ``bot_login`` that is not
        the token's user stops the run before any write) and the seal its notes there carry."""
        if not self._username_checked:
            me = self._call("reading the token's user", self._gl.http_get, "/user")
            actual = str(me.get("username") or "") if isinstance(me, dict) else ""
            if not actual:
                raise HostError("GitLab did not name the token's user, so Sieve cannot tell its own notes apart",
                                hint="use a project or personal access token with the 'api' scope")
            if self.bot_username and not comments.Identity(self.bot_username).is_self(actual):
                raise ConfigError(f"the token writes as {actual}, not as the configured bot_login "
                                  f"{self.bot_username}, so Sieve would not recognise its own notes and would post "
                                  "them again on every run",
                                  hint=f'set gitlab.bot_login = "{actual}" ([gitlab] table of .sieve.toml), or remove it')
            self.bot_username, self._username_checked = actual, True
        return comments.Identity(self.bot_username, markers.Seal("gitlab", self._marker_key))

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
        me = self._bot(ref.repo)
        existing, summaries, seen = [], [], []
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
                summaries.append(record)
                self._summary_bodies[str(first["id"])] = record.body
            elif record.finding:
                existing.append(record)
            seen += _sieve_note(first, len(notes) > 1, me)
        self._seen[str(ref)] = seen
        summary = next((c for c in summaries if c.summary_data.commit == refs["head_sha"]),
                       summaries[0] if summaries else None)
        return MergeRequest(ref=ref, title=mr.get("title", ""), base_sha=refs.get("base_sha", ""),
                            head_sha=refs["head_sha"], start_sha=refs.get("start_sha") or refs.get("base_sha", ""),
                            diff=assemble_diff(entries), existing=tuple(existing),
                            summary_id=summary.id.rsplit(":", 1)[-1] if summary else None,
                            summary_state=summary.summary_data if summary else markers.SummaryData(),
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
        if self._moved_on(base, mr, result):
            return result.counted(self.counters, calls, writes)
        files = line_maps(mr.diff)
        seal = self._bot(mr.ref.repo).seal
        leftovers: list[str] = []
        refused: dict[str, str] = {}
        for comment in plan.create:
            self._create(base, mr, replace(comment, body=seal.seal(comment.body)), files, result, leftovers, refused)
        for comment in plan.held:
            leftovers.append(f"- {render.code(f'{comment.finding.anchor.path}:{comment.finding.anchor.line}')}: "
                             f"{render.inert(comment.finding.review.strip())}")
            refused[comment.fingerprint] = markers.body_sha(comment.body)
        for update in plan.update:
            discussion, note = update.existing.id.split(":", 1)
            self._call("editing a comment", self._gl.http_put, f"{base}/notes/{note}",
                       post_data={"body": seal.seal(update.comment.body)})
            if update.existing.resolved:
                self._call("reopening a discussion", self._gl.http_put, f"{base}/discussions/{discussion}",
                           post_data={"resolved": False})
            result.updated += 1
        for resolve in plan.resolve:
            discussion = resolve.existing.id.split(":", 1)[0]
            self._call("resolving a discussion", self._gl.http_put, f"{base}/discussions/{discussion}",
                       post_data={"resolved": True})
            result.resolved += 1
        if self._moved_on(base, mr, result):
            return result.counted(self.counters, calls, writes)
        state = markers.SummaryData(mr.head_sha, refused)
        summary = render.recount(plan.summary, result.created - result.file_level)
        result.summary_url, created = self._summary(base, mr, summary, leftovers, state)
        seen = self._read_back(base, mr.ref.repo) if created or result.created else self._seen.get(str(mr.ref), [])
        self._drop_duplicates(base, seen, result, mr.head_sha)
        if status is not None:
            self._status(mr, status)
        return result.counted(self.counters, calls, writes)

    def _moved_on(self, base: str, mr: MergeRequest, result: ApplyResult) -> bool:
        now = self._call("reading the merge request's head", self._gl.http_get, base)
        head = str(((now or {}).get("diff_refs") or {}).get("head_sha") or "") if isinstance(now, dict) else ""
        return result.moved_on(mr, head)

    def _read_back(self, base: str, repo: str) -> list[tuple[int, str, bool, str]]:
        """Sieve's notes on the merge request as they are now (after creating some, or after a failed POST)."""
        me = self._bot(repo)
        seen = []
        for discussion in self._list("reading discussions", f"{base}/discussions"):
            notes = _notes(discussion)
            if notes:
                seen += _sieve_note(notes[0], len(notes) > 1, me)
        return seen

    def _reacted(self, base: str, note_id: int) -> bool | None:
        """Did anyone award an emoji to this note (asked only of duplicates about to be removed)? None: the note
        is gone (a racing run removed it)."""
        awards = self._unless_absent("reading award emoji", lambda: list(
            self._gl.http_list(f"{base}/notes/{note_id}/award_emoji", iterator=True)), None)
        return None if awards is None else bool(awards)

    def _drop_duplicates(self, base: str, seen: list[tuple[int, str, bool, str]], result: ApplyResult,
                         head: str) -> None:
        """Where two runs raced: of a finding's copies keep every one a person replied on or reacted to (else the
        oldest); of the summaries keep the one about ``head`` (else the oldest). Remove the rest."""
        groups: dict[str, list[tuple[int, bool, str]]] = {}
        for note_id, key, replied, commit in sorted(seen):
            groups.setdefault(key, []).append((note_id, replied, commit))
        for key, group in groups.items():
            if len(group) < 2:
                continue
            if key == "summary":
                keep = [next((g for g in group if g[2] == head), group[0])]
            else:
                reacted = {g: g[1] or self._reacted(base, g[0]) for g in group}
                group = [g for g in group if reacted[g] is not None]  # removed meanwhile by the other run
                keep = [g for g in group if reacted[g]] or group[:1]
            for note_id, _, _ in (g for g in group if g not in keep):
                if self._delete_note(base, note_id):
                    what = "summary" if key == "summary" else "comment"
                    result.notes.append(f"{what} note {note_id} removed: a copy of note {keep[0][0]} "
                                        "(two runs overlapped)")

    def _delete_note(self, base: str, note_id: int) -> bool:
        """Remove one of Sieve's duplicate notes; False when a racing run removed it first."""
        return self._unless_absent("removing a duplicate note",
                                   lambda: self._gl.http_delete(f"{base}/notes/{note_id}") or True, False)

    def _post(self, what: str, path: str, data: dict[str, Any], landed: Callable[[], bool]) -> dict[str, Any] | None:
        """POST once; when the result is unknown (5xx, timeout, reset) read the notes and resend only if it did
        not land (then None is returned)."""
        def fail(answer: http.Answer, verdict: http.Verdict, attempts: int) -> Exception:
            detail = answer.message or f"HTTP {answer.status}"
            return EndpointError(f"GitLab did not answer {what}: {detail} after {attempts} attempt(s)",
                                 status=answer.status, hint="the instance may be down or overloaded; run again later")

        return http.run(lambda: self._gl.http_post(path, post_data=data), self.policy, sleep=self.sleep,
                        classify=lambda exc: exc.answer if isinstance(exc, http.AmbiguousWrite) else None,
                        fail=fail, counters=self.counters, landed=landed)

    def _post_discussion(self, base: str, body: str, position: dict[str, Any] | None,
                         fingerprint: str = "", repo: str = "") -> str | None:
        """POST a discussion; the refusal message on a 400 (position not accepted), None on success."""
        data: dict[str, Any] = {"body": body}
        if position is not None:
            data["position"] = position
        try:
            self._post("posting a comment", f"{base}/discussions", data,
                       landed=lambda: any(seen[1] == fingerprint for seen in self._read_back(base, repo)))
            return None
        except gitlab.exceptions.GitlabHttpError as exc:
            if exc.response_code == 400:
                return str(exc.error_message or "refused")
            raise _error(exc, "posting a comment", self._token) from None
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise _error(exc, "posting a comment", self._token) from None

    def _create(self, base: str, mr: MergeRequest, comment: PlannedComment, files: dict[str, _FileLines],
                result: ApplyResult, leftovers: list[str], refused: dict[str, str]) -> None:
        """Inline (with line_code if demanded) → file-level → general note → summary. Never lost; what reaches
        the summary is remembered in its seal (``refused``) so the same text is not sent again next run."""
        anchor = comment.finding.anchor
        post = functools.partial(self._post_discussion, base, fingerprint=comment.fingerprint, repo=mr.ref.repo)
        position = build_position(comment, mr, files, self._line_code_needed)
        refusal = "line not in the diff" if position is None else post(comment.body, position)
        if position is not None and refusal and _needs_line_code(refusal) and not self._line_code_needed:
            retry = build_position(comment, mr, files, True)
            refusal = post(comment.body, retry)
            self._line_code_needed = refusal is None
        if refusal is None:
            result.created += 1
            return
        where = render.code(f"{anchor.path}:{anchor.line}")
        result.notes.append(f"{where}: inline position refused ({redact(refusal)}); posted less precisely")
        fallback = self._bot(mr.ref.repo).seal.seal(
            f"**{where}** (GitLab could not anchor this comment to the line)\n\n{comment.body}")
        for pos in [p for p in (file_position(comment, mr, files),) if p] + [None]:
            if post(fallback if pos is None else comment.body, pos) is None:
                result.created += 1
                result.file_level += 1
                return
        leftovers.append(f"- {where}: {render.inert(comment.finding.review.strip())}")
        refused[comment.fingerprint] = markers.body_sha(comment.body)
        result.notes.append(f"{where}: GitLab refused the comment everywhere; it is listed in the summary and not "
                            "sent again unchanged")
        result.to_summary += 1

    def _summary(self, base: str, mr: MergeRequest, summary: str, leftovers: list[str],
                 state: markers.SummaryData) -> tuple[str, bool]:
        """Create the summary note once, then edit it in place (no write at all when nothing changed).
        Returns its URL and whether this run created it."""
        body = summary
        if leftovers:
            listed = leftovers[: render.MAX_LISTED] + ([f"- … and {len(leftovers) - render.MAX_LISTED} more"]
                                                       if len(leftovers) > render.MAX_LISTED else [])
            head = summary.rstrip()
            head = head[: -len(markers.SUMMARY_MARKER)] if markers.is_summary(head) else head
            body = head.rstrip() + "\n\n**Could not be posted inline:**\n" + "\n".join(listed) + "\n\n" + \
                markers.SUMMARY_MARKER
        body = render.fit_text(body, render.body_limit(MAX_BODY), markers.SUMMARY_MARKER)
        body = self._bot(mr.ref.repo).seal.seal(body, state)
        note_id, created = mr.summary_id, False
        if note_id and self._summary_bodies.get(note_id) != body:
            try:
                self._gl.http_put(f"{base}/notes/{note_id}", post_data={"body": body})
            except gitlab.exceptions.GitlabHttpError as exc:
                if exc.response_code != 404:
                    raise _error(exc, "editing the summary", self._token) from None
                note_id = None  # removed meanwhile: create it anew
            except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
                raise _error(exc, "editing the summary", self._token) from None
        if not note_id:
            note = self._post_summary(base, body, mr.ref.repo)
            note_id, created = str(note.get("id", "")) if note else "", True
        self._summary_bodies[note_id] = body
        return (f"{mr.web_url}#note_{note_id}" if mr.web_url else note_id), created

    def _post_summary(self, base: str, body: str, repo: str) -> dict[str, Any] | None:
        try:
            return self._post("posting the summary", f"{base}/notes", {"body": body},
                              landed=lambda: any(seen[1] == "summary" for seen in self._read_back(base, repo)))
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise _error(exc, "posting the summary", self._token) from None

    def _status(self, mr: MergeRequest, status: StatusSpec) -> None:
        """The pipeline-visible commit status; sent again after an unknown result (a repeated status is harmless)."""
        state = {"failure": "failed"}.get(status.state, status.state)
        if status.only_to_replace:
            listed = self._list("reading the commit statuses",
                                f"/projects/{_encode(mr.ref.repo)}/repository/commits/{mr.head_sha}/statuses")
            ours = [s for s in listed if s.get("name") == status.context]
            if not ours or ours[0].get("status") == state:
                return
        data = {"state": state, "name": status.context, "description": status.description[:140],
                "target_url": mr.web_url or None}
        try:
            self._post("setting the commit status", f"/projects/{_encode(mr.ref.repo)}/statuses/{mr.head_sha}",
                       data, landed=lambda: False)
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise _error(exc, "setting the commit status", self._token) from None
