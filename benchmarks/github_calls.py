"""API calls and writes per GitHub review, measured against the validating fake GitHub.

    .venv/bin/python -m benchmarks.github_calls

Prints, for a pull request with 50 findings (a real git diff): the first review, a re-run on the same head
with no change, and a re-run after a push that changes 5 findings; and the time of ``feedback`` over 500
Sieve comments (50 of them with votes). Counts come from the host's HTTP-layer counter and are checked
against the fake's own request log. Goals: writes ≤ 3 for a review; 0 writes besides the summary edit on a re-run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bot.findings import Anchor, Finding, Rating
from bot.hosts.base import MergeRequestRef, StatusSpec
from bot.hosts.github import GitHubHost
from bot.plan import PlanConfig, plan
from bot.severity import Severity
from tests.fake_github import FakeGitHub
from tests.gitrepo import make_repo

TOKEN = "ghp_" + "B" * 36
REF = MergeRequestRef("github", "octo/app", 1)


def change(root: Path, n: int, edited: range) -> tuple[object, str, str]:
    repo = make_repo(root)
    repo.write("app.py", "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(n)))
    base = repo.commit("base")
    repo.write("app.py", "".join(f"def f{i}(x):\n    eval(x)  # {i}\n    return x + {i}\n" if i in edited
                                 else f"def f{i}(x):\n    return x + {i}\n" for i in range(n)))
    return repo, base, repo.commit("change")


def findings(repo, base: str, head: str) -> list[Finding]:
    from bot import diff as diffmod

    return [Finding(Anchor(h.path, ln.new_lineno), review=f"eval on input {ln.text.strip()}", source="ruff",
                    code=h.text(), rule_id="S307")
            for h in diffmod.parse(repo.diff(base, head)).hunks for ln in h.lines if ln.kind == "+"]


def review(fake: FakeGitHub, found: list[Finding]) -> tuple[int, int, int, float]:
    host = GitHubHost(TOKEN, base_url=fake.base_url, sleep=lambda s: None, bot_login="sieve-bot")
    started, before = time.perf_counter(), len(fake.requests)
    mr = host.fetch(REF)
    rating = Rating({"critical": 0.7, "major": 0.1, "minor": 0.1, "trivial": 0.1}, "critical", "m", "p")
    p = plan(found, [rating] * len(found), PlanConfig(threshold=Severity.MINOR, max_comments=100,
                                                      commit=mr.head_sha), mr.existing)
    result = host.apply(mr, p, StatusSpec("failure", f"{len(found)} finding(s)"))
    assert result.writes == len(fake.writes()) - sum(1 for r in fake.requests[:before] if r[0] != "GET")
    return host.counters.api_calls, result.api_calls, result.writes, time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub() as fake:
        fake.add_token(TOKEN, "sieve-bot")
        repo, base, head = change(Path(tmp) / "r", 120, range(0, 100, 2))
        fake.add_pull(1, diff=repo.diff(base, head), head_sha=head, base_sha=base)
        found = findings(repo, base, head)
        print(f"pull request with {len(found)} findings (real git diff, {len(repo.diff(base, head))} bytes)")
        print("run                     calls(total)  calls(apply)  writes  seconds")
        for label in ("first review", "re-run, no change"):
            total, calls, writes, secs = review(fake, found)
            print(f"{label:<24}{total:>12}{calls:>14}{writes:>8}{secs:>9.2f}")
        lines = repo.show(head, "app.py").decode()
        for i in (0, 2, 4, 6, 8):
            lines = lines.replace(f"eval(x)  # {i}\n", f"exec(x)  # {i}\n")
        repo.write("app.py", lines)
        head2 = repo.commit("push")
        fake.push(1, diff=repo.diff(base, head2), head_sha=head2)
        total, calls, writes, secs = review(fake, findings(repo, base, head2))
        print(f"{'push: 5 changed':<24}{total:>12}{calls:>14}{writes:>8}{secs:>9.2f}")
        ids = sorted(fake.review_comments)
        for i in range(450):
            fake.add_review_comment(1, "sieve-bot", fake.review_comments[ids[i % len(ids)]]["body"], path="app.py",
                                    line=None)
        for cid in sorted(fake.review_comments)[:50]:
            fake.react("pulls", cid, "octo", "+1")
        host = GitHubHost(TOKEN, base_url=fake.base_url, sleep=lambda s: None, bot_login="sieve-bot")
        started = time.perf_counter()
        items = list(host.feedback("octo/app"))
        print(f"feedback over {len(items)} Sieve comments (50 with votes): {host.counters.api_calls} calls, "
              f"{time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
