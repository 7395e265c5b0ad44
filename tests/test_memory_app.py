"""Team memory end to end: a review on the fake GitHub, reactions harvested by `sieve feedback collect`, and the next
review rated by the real default student with the memory applied (or, without a store, exactly as before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import cli, markers
from bot.hosts.base import MergeRequestRef
from bot.remote import repo_name
from bot.store import open_store
from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.gitrepo import GitRepo, make_repo

TOKEN = "ghp_" + "M3mory" * 6
#: a module with an unused variable (F841, rated major), a bare except (E722, minor) and a mutable default (B006)
CODE = '''import os


def {name}(x, items=[]):
    try:
        unused = os.getcwd()
    except:
        pass
    return items
'''
TEST = '''import subprocess


def test_{name}(tmp):
    subprocess.call("ls " + tmp, shell=True)
'''
#: what `sieve review --format json` wrote for each finding before team memory existed
OLD_KEYS = {"path", "line", "side", "start_line", "severity", "probabilities", "review", "source", "rule_id",
            "posted", "skip_reason", "explanation", "fingerprint", "truncated", "suggestion"}


def change(root: Path, name: str) -> tuple[GitRepo, str, str, dict[str, bytes]]:
    repo = make_repo(root)
    repo.write("README", "x\n")
    base = repo.commit("base")
    files = {f"app/{name}.py": CODE.format(name=name), f"tests/test_{name}.py": TEST.format(name=name)}
    for path, text in files.items():
        repo.write(path, text)
    head = repo.commit(name)
    return repo, base, head, {path: text.encode() for path, text in files.items()}


def review_json(*args: str, out: Path) -> dict[str, dict]:
    code = cli.main(["review", *args, "--format", "json", "--out", str(out)])
    assert code == 0
    return {f["rule_id"]: f for f in json.loads(out.read_text())["findings"]}


def import_rows(db: Path, tmp: Path, rows: list[dict]) -> None:
    path = tmp / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["feedback", "import", str(path), "--db", str(db)]) == 0


def other_repo_rows() -> list[dict]:
    """Two maintainers of another repository 👎'd B006 there."""
    return [{"repo": "octo/other", "path": f"lib/m{i}.py", "line": 3, "tool": "ruff", "rule": "B006",
             "review": "B006 Do not use mutable data structures for argument defaults", "severity": "minor",
             "reaction": "-1", "user": user, "trusted": True} for i in range(2) for user in ("ann", "bob")]


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_EVENT_PATH", "CI_MERGE_REQUEST_IID", "SIEVE_GITHUB_TOKEN", "GH_TOKEN", "SIEVE_DB",
                 "SIEVE_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    return tmp_path


@pytest.mark.slow  # the real default student rates the review
def test_a_review_without_a_store_is_exactly_as_before(clean_env: Path):
    tmp = clean_env
    repo, base, head, _ = change(tmp / "repo", "alpha")
    (tmp / "change.patch").write_bytes(repo.diff(base, head))
    plain = review_json("--diff", str(tmp / "change.patch"), "--repo", str(repo.root), out=tmp / "plain.json")
    missing = review_json("--diff", str(tmp / "change.patch"), "--repo", str(repo.root), "--db",
                          str(tmp / "absent.db"), out=tmp / "missing.json")
    assert not (tmp / "absent.db").exists() and not (tmp / "sieve-feedback.db").exists()  # never created
    db = tmp / "team.db"
    import_rows(db, tmp, other_repo_rows())
    off = review_json("--diff", str(tmp / "change.patch"), "--repo", str(repo.root), "--db", str(db), "--no-memory",
                      out=tmp / "off.json")
    assert plain == missing == off and all(set(f) == OLD_KEYS for f in plain.values())
    on = review_json("--diff", str(tmp / "change.patch"), "--repo", str(repo.root), "--db", str(db),
                     out=tmp / "on.json")  # a local diff has no repository: every repository's memory applies
    assert on["B006"]["memory"]["moved"] and on["B006"]["severity"] == "trivial" and not on["B006"]["posted"]
    assert on["B006"]["memory"]["before"]["severity"] == plain["B006"]["severity"]
    assert {k: v for k, v in on.items() if k != "B006"} == {k: v for k, v in plain.items() if k != "B006"}


@pytest.mark.slow  # the real default student rates the review
def test_reactions_harvested_from_github_move_the_next_review(clean_env: Path):
    if not SPEC_PATH.exists():
        pytest.skip(f"shared API description missing: {SPEC_PATH}")
    tmp, db = clean_env, clean_env / "team.db"
    import_rows(db, tmp, other_repo_rows())
    with FakeGitHub("octo", "app") as fake:
        fake.add_token(TOKEN, "sieve-bot")
        for login in ("ann", "bob", "mallory"):
            fake.set_permission(login, "write")
        repo, base, head, files = change(tmp / "one", "alpha")
        fake.add_pull(1, diff=repo.diff(base, head), head_sha=head, base_sha=base, files=files)
        assert cli.main(["review", "--github", "octo/app#1", "--github-url", fake.base_url, "--db", str(db)]) == 0
        posted = {markers.decode(c["body"]).rule_id: cid for cid, c in fake.review_comments.items()}
        assert {"F841", "E722", "S602"} <= set(posted)
        for login in ("ann", "bob"):
            fake.react("pulls", posted["F841"], login, "-1")
            fake.add_review_comment(1, login, "/sieve severity critical", in_reply_to=posted["E722"])
        fake.react("pulls", posted["S602"], "mallory", "-1")  # one account against a security finding
        fake.react("pulls", posted["E722"], "stranger", "-1")  # no write access: kept, never counted
        assert cli.main(["feedback", "collect", "--github", "octo/app", "--github-url", fake.base_url,
                         "--db", str(db)]) == 0
        store = open_store(db)
        assert {c.rule_id for c in store.comments() if c.host == "github"} >= {"F841", "E722", "S602"}
        store.close()

        repo2, base2, head2, files2 = change(tmp / "two", "beta")
        fake.add_pull(2, diff=repo2.diff(base2, head2), head_sha=head2, base_sha=base2, files=files2)
        before = set(fake.review_comments)
        found = review_json("--github", "octo/app#2", "--github-url", fake.base_url, "--db", str(db),
                            out=tmp / "two.json")
        new = {markers.decode(fake.review_comments[c]["body"]).rule_id: fake.review_comments[c]["body"]
               for c in set(fake.review_comments) - before}
    assert found["F841"]["severity"] == "trivial" and not found["F841"]["posted"] and "F841" not in new
    assert found["F841"]["memory"]["note"] == "rated trivial, not major: 2 maintainers 👎'd ruff F841"
    assert found["E722"]["severity"] == "critical" and found["E722"]["memory"]["voters"] == 2
    assert "_Team memory:_ rated critical, not minor: 2 maintainers corrected ruff E722 to critical" in new["E722"]
    assert "memory" not in found["S602"] and found["S602"]["posted"]  # one account: nothing beyond its own finding
    assert "memory" not in found["B006"]  # another repository's memory does not apply to octo/app


@pytest.mark.slow  # the real default student rates the review
def test_memory_lists_and_revokes_entries(clean_env: Path, capsys):
    tmp, db = clean_env, clean_env / "team.db"
    import_rows(db, tmp, other_repo_rows())
    capsys.readouterr()
    assert cli.main(["feedback", "memory", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rule = next(line for line in lines if " rule " in line)
    assert "ruff B006" in rule and "down (at most trivial)" in rule and "voters 2" in rule and "[applies]" in rule
    entry = rule.split()[0]
    assert cli.main(["feedback", "memory", "revoke", entry, "--db", str(db)]) == 0
    assert cli.main(["feedback", "memory", "--db", str(db)]) == 0
    assert f"{entry}  rule" in (out := capsys.readouterr().out) and "[revoked]" in out
    assert cli.main(["feedback", "memory", "revoke", "nope", "--db", str(db)]) == 64
    assert "error: no memory entry 'nope'" in capsys.readouterr().err
    repo, base, head, _ = change(tmp / "repo", "gamma")
    (tmp / "c.patch").write_bytes(repo.diff(base, head))
    found = review_json("--diff", str(tmp / "c.patch"), "--repo", str(repo.root), "--db", str(db),
                        out=tmp / "c.json")
    assert found["B006"].get("memory", {}).get("entry") != entry  # never applied again


def test_a_gitlab_job_names_its_project_as_the_harvest_does():
    ref = MergeRequestRef("gitlab", "4711", 9)  # inside a merge-request pipeline the ref holds CI_PROJECT_ID
    env = {"CI_PROJECT_ID": "4711", "CI_PROJECT_PATH": "group/sub/app"}
    assert repo_name(ref, env) == "group/sub/app"
    assert repo_name(MergeRequestRef("gitlab", "group/sub/app", 9), {}) == "group/sub/app"
    assert repo_name(MergeRequestRef("github", "octo/app", 3), env) == "octo/app"
