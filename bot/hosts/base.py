"""The host protocol and the neutral types that cross it. No SDK object ever leaves a host module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Literal, Protocol

from bot import markers
from bot.comments import Comment
from bot.plan import ExistingComment, ReviewPlan
from bot.registry import Registry

if TYPE_CHECKING:
    from bot.http import Counters

HostName = Literal["github", "gitlab", "local"]


@dataclass(frozen=True)
class MergeRequestRef:
    """``owner/repo#123`` on GitHub, ``group/project!45`` on GitLab."""

    host: HostName
    repo: str
    number: int

    def __str__(self) -> str:
        return f"{self.repo}{'#' if self.host == 'github' else '!'}{self.number}"


@dataclass(frozen=True)
class MergeRequest:
    ref: MergeRequestRef
    title: str
    base_sha: str
    head_sha: str
    start_sha: str  # GitLab diff_refs.start_sha; equals base_sha on GitHub
    diff: bytes
    existing: tuple[ExistingComment, ...] = ()
    summary_id: str | None = None  # the summary comment from an earlier run, if any
    summary_state: markers.SummaryData = field(default_factory=markers.SummaryData)  # what that summary remembers
    is_fork: bool = False
    web_url: str = ""
    author: str = ""


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    resolved: int = 0
    file_level: int = 0  # comments that fell back to a file-level comment (line outside the diff)
    to_summary: int = 0  # comments that fell back to the summary
    summary_url: str = ""
    api_calls: int = 0
    writes: int = 0
    notes: list[str] = field(default_factory=list)
    stale: bool = False  # the merge request moved on to a newer head meanwhile: its own run owns the summary

    def moved_on(self, mr: MergeRequest, head: str) -> bool:
        """Is ``head`` (the merge request's head now) newer than the one reviewed? Then the run is stale: it says
        so and writes no more — the run for the new head owns the summary and the status."""
        if head and head != mr.head_sha:
            self.stale = True
            self.notes.append(f"{mr.ref} moved on from {mr.head_sha[:12]} to {head[:12]} during this run: the run "
                              "for the new head writes the summary and the status")
        return self.stale

    def counted(self, counters: Counters, calls_before: int, writes_before: int) -> ApplyResult:
        """This result with the requests and writes made since the counters read ``calls_before``/``writes_before``."""
        self.api_calls = counters.api_calls - calls_before
        self.writes = counters.writes - writes_before
        return self


@dataclass(frozen=True)
class StatusSpec:
    """Commit status / check to set: ``state`` is success or failure. ``only_to_replace``: set it only when a
    Sieve status is already on the head (so a passing re-run clears an earlier failure, while a repository
    that never asked for statuses is not given one)."""

    state: Literal["success", "failure", "pending"]
    description: str
    context: str = "sieve"
    only_to_replace: bool = False


@dataclass(frozen=True)
class Vote:
    """One reaction on a Sieve comment. ``user`` is the login (for people to read); ``user_id`` is the host's
    numeric id, which a rename does not change and nobody else can take over (trust is decided by it)."""

    user: str
    content: str  # "+1" / "-1" (GitLab thumbsup/thumbsdown are mapped to these)
    trusted: bool  # author may write to the repository (GitHub permission, GitLab Developer+) or is trusted_users
    created_at: str = ""
    id: str = ""
    user_id: int | None = None
    trust_unknown: str = ""  # why the host's answer on this user's permission was unclear ("" when it was clear)


@dataclass(frozen=True)
class Reply:
    """A reply in a Sieve comment's thread (``/sieve severity minor`` is a correction)."""

    user: str
    body: str
    trusted: bool
    created_at: str = ""
    id: str = ""
    user_id: int | None = None
    trust_unknown: str = ""  # as on Vote


@dataclass(frozen=True)
class CommentFeedback:
    """One of Sieve's own comments (``comment``: written by its identity, marker decoded), with reactions and replies."""

    host: HostName
    repo: str
    number: int
    url: str
    comment: Comment
    votes: tuple[Vote, ...] = ()
    replies: tuple[Reply, ...] = ()
    created_at: str = ""

    @property
    def comment_id(self) -> str:
        return self.comment.id

    @property
    def body(self) -> str:
        return self.comment.body


class Host(Protocol):
    name: HostName
    counters: Counters  # every HTTP request the host made (bot.http), read by `sieve feedback collect` and apply

    def fetch(self, ref: MergeRequestRef) -> MergeRequest: ...

    def read_file(self, mr: MergeRequest, path: str) -> bytes | None: ...

    def apply(self, mr: MergeRequest, plan: ReviewPlan, status: StatusSpec | None = None) -> ApplyResult: ...

    def feedback(self, repo: str, since: str | None = None) -> Iterator[CommentFeedback]: ...


HOSTS: Registry[Host] = Registry("host")
