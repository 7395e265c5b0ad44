"""Time `feedback collect` over 500 Sieve comments on the fake GitLab (real python-gitlab, real SQLite).

Prints seconds and API calls for a first collect and an unchanged re-collect, and their ratio to a baseline
measured in the same process: plain GETs of the same endpoints with one requests.Session (the transport floor).
Run: .venv/bin/python benchmarks/feedback_collect.py [--comments 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot import feedback_app, markers
from bot.hosts.gitlab import GitLabHost
from bot.store import open_store
from tests.fake_gitlab import FakeGitLab
from tests.gitrepo import GitRepo

TOKEN = "bench-token-0123456789"


def populate(fake: FakeGitLab, repo: GitRepo, comments: int, per_mr: int) -> None:
    repo.write("a.py", "x = 1\n")
    base = repo.commit("base")
    repo.write("a.py", "x = 2\n")
    head = repo.commit("head")
    bot = fake.add_user("sieve-bot", TOKEN)
    voters = [fake.add_user(f"user{i}", f"user-token-{i}") for i in range(8)]
    project = fake.add_project("group/app", repo.root, {u["id"]: 30 for u in voters[:5]})
    for index in range(comments):
        iid = 1 + index // per_mr
        mr = fake.mrs.get((project["id"], iid)) or fake.add_mr(project, iid, base, head, voters[0])
        mark = markers.encode(markers.Marker(
            fingerprint=f"{index:016x}", severity=("critical", "major", "minor", "trivial")[index % 4],
            probabilities={"critical": 0.25, "major": 0.25, "minor": 0.25, "trivial": 0.25}, model="student-v1",
            prompt_version="p1", commit=head, path="a.py", line=1, review=f"finding {index}", code="+x = 2",
            source="llm"))
        note = fake._note(mr, bot, f"review {index}\n{mark}", None, "DiffNote")
        mr.discussions.append({"id": f"{index:040x}", "individual_note": False, "notes": [note]})
        for k in range(index % 3):
            fake.award(note, voters[(index + k) % len(voters)], "thumbsup" if k % 2 == 0 else "thumbsdown")
        if index % 10 == 0:
            fake.reply(mr, mr.discussions[-1], voters[1], "/sieve severity minor")


def baseline(fake: FakeGitLab) -> tuple[float, int]:
    """The same GETs (MR list, discussions, award emoji per note, members) with a bare requests.Session."""
    session, calls = requests.Session(), 0
    session.headers["PRIVATE-TOKEN"] = TOKEN
    api = f"{fake.url}/api/v4/projects/group%2Fapp"
    started = time.perf_counter()
    mrs = session.get(f"{api}/merge_requests", params={"per_page": 100}).json()
    calls += 1
    for mr in mrs:
        page = 1
        while page:
            r = session.get(f"{api}/merge_requests/{mr['iid']}/discussions", params={"per_page": 100, "page": page})
            calls += 1
            for d in r.json():
                session.get(f"{api}/merge_requests/{mr['iid']}/notes/{d['notes'][0]['id']}/award_emoji").json()
                calls += 1
            page = int(r.headers.get("x-next-page") or 0)
    for user_id in {u["id"] for u in fake.users.values()}:
        session.get(f"{api}/members/all/{user_id}")
        calls += 1
    return time.perf_counter() - started, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comments", type=int, default=500)
    parser.add_argument("--per-mr", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeGitLab(lifetime=600) as fake:
        populate(fake, GitRepo(Path(tmp) / "repo"), args.comments, args.per_mr)
        base_s, base_calls = baseline(fake)
        store = open_store(Path(tmp) / "fb.db")
        runs = []
        for label in ("first collect", "re-collect (no change)"):
            host = GitLabHost(TOKEN, url=fake.url, write_pause=0.0)
            stats = feedback_app.collect(host, "group/app", None, store)
            runs.append((label, stats))
        print(f"baseline (bare GETs): {base_s:.2f} s, {base_calls} calls")
        for label, stats in runs:
            print(f"{label}: {stats.seconds:.2f} s, {stats.api_calls} API calls, {stats.comments} comments, "
                  f"{stats.new_votes} new votes; ratio to baseline {stats.seconds / base_s:.2f}x; "
                  f"{1000 * stats.seconds / max(1, stats.comments):.1f} ms per comment")


if __name__ == "__main__":
    main()
