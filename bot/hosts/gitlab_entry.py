"""GitLab's host entry: how the command line names a merge request, where the token and a merge-request
pipeline's merge request are found, which settings table it reads and how long a body may be. python-gitlab is
imported only when a host is made (bot/hosts/gitlab.py)."""

from __future__ import annotations

from collections.abc import Mapping

from bot.hosts.base import HOSTS, CiJob, Host, HostEntry, MergeRequestRef
from bot.hosts.gitlab_positions import MAX_BODY, parse_gitlab_ref, ref_from_ci_env, url_from_ci_env
from bot.hosts.options import GitLabOptions


def make_gitlab(token: str, **options: object) -> Host:
    from bot.hosts.gitlab import GitLabHost

    return GitLabHost(token, **options)  # type: ignore[arg-type]


def pipeline_job(environ: Mapping[str, str]) -> CiJob | None:
    """The merge request of a GitLab merge-request pipeline and the instance's URL; None outside one."""
    if environ.get("CI_MERGE_REQUEST_IID"):
        return ref_from_ci_env(environ), url_from_ci_env(environ)
    return None


def store_repo(ref: MergeRequestRef, environ: Mapping[str, str]) -> str:
    """The repository as the feedback store names it: a pipeline's numeric project id is its path
    (``CI_PROJECT_PATH``, the name ``sieve feedback collect --gitlab`` is given)."""
    if ref.repo == environ.get("CI_PROJECT_ID") and environ.get("CI_PROJECT_PATH"):
        return environ["CI_PROJECT_PATH"]
    return ref.repo


GITLAB = HOSTS.add_entry(HostEntry(
    name="gitlab", factory=make_gitlab, options=GitLabOptions, parse_ref=parse_gitlab_ref,
    ref_metavar="GROUP/PROJECT!N", ref_help="review a GitLab merge request", repo_metavar="GROUP/PROJECT",
    url_help="self-managed GitLab URL", token_vars=("SIEVE_GITLAB_TOKEN", "GITLAB_TOKEN"),
    detect_ci=pipeline_job, max_body=MAX_BODY, ref_mark="!", url_setting="gitlab_url", store_repo=store_repo))
