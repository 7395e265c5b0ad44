"""The host protocol and the neutral types that cross it. No SDK object ever leaves a host module."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from bot import markers
from bot.comments import Comment
from bot.errors import ConfigError
from bot.plan import ExistingComment, ReviewPlan
from bot.registry import Registry

if TYPE_CHECKING:
    from bot.http import Counters

HostName = str  # a registered host's name (github, gitlab …), or "local"


@dataclass(frozen=True)
class MergeRequestRef:
    """``owner/repo#123`` on GitHub, ``group/project!45`` on GitLab."""

    host: HostName
    repo: str
    number: int

    def __str__(self) -> str:
        entry = HOSTS._entries.get(self.host)
        mark = entry.ref_mark if entry is not None else "#" if self.host == "github" else "!"
        return f"{self.repo}{mark}{self.number}"


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


#: A CI job's merge request and the API URL the job names for its host ("" for the configured one).
CiJob = tuple[MergeRequestRef, str]


@dataclass(frozen=True)
class HostEntry:
    """Everything the rest of Sieve needs to know about one host, registered by the host's own module: the
    command line makes ``--NAME`` / ``--NAME-url`` from it, bot.remote finds tokens and CI jobs with it, the
    configuration checks the ``[NAME]`` table against ``options`` and the planner fits bodies to ``max_body``."""

    name: str
    factory: Callable[..., Host]  # (token, **options.host_kwargs(), marker_key=...) → the host
    options: type  # the frozen options class of the [NAME] table; ``host_kwargs()`` gives the factory's keywords
    parse_ref: Callable[[str], MergeRequestRef]  # text of ``--NAME`` → a reference (a ConfigError when it is none)
    ref_metavar: str  # ``review --NAME``: how a merge request is written, e.g. OWNER/REPO#N
    ref_help: str
    repo_metavar: str  # ``feedback collect --NAME``: how a repository is written, e.g. OWNER/REPO
    url_help: str  # ``--NAME-url``
    token_vars: tuple[str, ...]  # environment variables that may hold the token, the first set one wins
    detect_ci: Callable[[Mapping[str, str]], CiJob | None]  # the CI job's merge request; None outside such a job
    max_body: int | None  # the longest comment or summary body the host accepts, in characters (None: no limit)
    ref_mark: str = "#"  # between repository and number when a reference is written out (GitLab: !)
    url_setting: str = ""  # the top-level setting that stands for ``[NAME] url`` (github_url); "" when none does
    store_repo: Callable[[MergeRequestRef, Mapping[str, str]], str] | None = None  # the feedback store's repo name

    @property
    def dest(self) -> str:
        """The argparse destination of ``--NAME``."""
        return self.name.replace("-", "_")

    @property
    def url_dest(self) -> str:
        """The argparse destination of ``--NAME-url``."""
        return f"{self.dest}_url"


class HostRegistry(Registry[Host]):
    """The host registry: a Registry whose entries are whole :class:`HostEntry` records."""

    def __init__(self) -> None:
        super().__init__("host")
        self._entries: dict[str, HostEntry] = {}

    def add_entry(self, entry: HostEntry) -> HostEntry:
        self.add(entry.name, entry.factory, entry.options)
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        super().remove(name)
        self._entries.pop(name, None)

    def entry(self, name: str) -> HostEntry:
        """The entry of ``name``; a ConfigError naming the registered hosts when there is none."""
        self.check_name(name, self.kind)
        if name not in self._entries:
            raise ConfigError(f"the host {name!r} was registered without a host entry",
                              hint="register it with HOSTS.add_entry(HostEntry(...))")
        return self._entries[name]

    def entries(self) -> list[HostEntry]:
        """Every host entry, by name."""
        return [self._entries[name] for name in self.names() if name in self._entries]


HOSTS = HostRegistry()
