"""GitHub's host entry: how the command line names a pull request, where the token and an Actions run's pull
request are found, which settings table it reads and how long a body may be. PyGithub is imported only when a
host is made (bot/hosts/github.py), so the command line can list its hosts without loading any SDK."""

from __future__ import annotations

from collections.abc import Mapping

from bot.hosts.base import HOSTS, CiJob, Host, HostEntry
from bot.hosts.github_text import MAX_BODY, parse_github_ref, ref_from_actions_env
from bot.hosts.options import GitHubOptions


def make_github(token: str, **options: object) -> Host:
    from bot.hosts.github import GitHubHost

    return GitHubHost(token, **options)  # type: ignore[arg-type]


def actions_job(environ: Mapping[str, str]) -> CiJob | None:
    """The pull request of a GitHub Actions run and the run's API URL (GITHUB_API_URL); None outside Actions."""
    if environ.get("GITHUB_EVENT_PATH") and environ.get("GITHUB_ACTIONS"):
        return ref_from_actions_env(environ), environ.get("GITHUB_API_URL", "")
    return None


GITHUB = HOSTS.add_entry(HostEntry(
    name="github", factory=make_github, options=GitHubOptions, parse_ref=parse_github_ref,
    ref_metavar="OWNER/REPO#N", ref_help="review a GitHub pull request", repo_metavar="OWNER/REPO",
    url_help="GitHub API URL (Enterprise)", token_vars=("SIEVE_GITHUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN"),
    detect_ci=actions_job, max_body=MAX_BODY, ref_mark="#", url_setting="github_url"))
