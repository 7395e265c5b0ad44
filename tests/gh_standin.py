"""A recording stand-in for GitHub's ``gh`` command line, for the workflows that open pull requests.

It answers the three calls the shipped workflows make — ``gh pr list``, ``gh pr create`` and ``gh pr edit`` — with
the flags they use, keeps the pull requests it opened in a JSON file (``GH_STANDIN_STATE``) and records every call
there. Like ``gh`` it needs ``GH_TOKEN`` (and ``GH_REPO`` outside a checkout), refuses a flag it does not know and
refuses to open a pull request whose head branch the remote (``GH_STANDIN_REMOTE``, a real git repository) lacks;
``--jq`` filters go through the real ``jq``. What it does not do is talk to GitHub: tests read the state file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FLAGS = {"list": {"--head", "--base", "--state", "--json", "--jq"},
         "create": {"--head", "--base", "--title", "--body-file"},
         "edit": {"--body-file", "--title"}}


def fail(text: str, code: int = 1) -> int:
    print(text, file=sys.stderr)
    return code


def parse(words: list[str], allowed: set[str]) -> tuple[dict[str, str], list[str]]:
    flags, rest = {}, []
    while words:
        word = words.pop(0)
        if word.startswith("--"):
            if word not in allowed:
                raise ValueError(f"unknown flag: {word}")
            if not words:
                raise ValueError(f"flag needs an argument: {word}")
            flags[word] = words.pop(0)
        else:
            rest.append(word)
    return flags, rest


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["GH_STANDIN_STATE"])
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"pulls": [], "calls": []}
    state["calls"].append(argv)
    state_path.write_text(json.dumps(state, indent=1))
    if not os.environ.get("GH_TOKEN"):
        return fail("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable.", 4)
    if not os.environ.get("GH_REPO"):
        return fail("could not determine base repository: set GH_REPO")
    if argv[:1] != ["pr"] or len(argv) < 2 or argv[1] not in FLAGS:
        return fail(f"unknown command {' '.join(argv[:2])!r} for the stand-in")
    try:
        flags, rest = parse(argv[2:], FLAGS[argv[1]])
    except ValueError as exc:
        return fail(str(exc))
    pulls = state["pulls"]
    if argv[1] == "list":
        found = [p for p in pulls if p["head"] == flags.get("--head", p["head"])
                 and p["base"] == flags.get("--base", p["base"]) and p["state"] == flags.get("--state", "open")]
        fields = flags.get("--json", "").split(",")
        out = json.dumps([{k: p[k] for k in fields if k in p} for p in found])
        if "--jq" in flags:
            done = subprocess.run(["jq", "-r", flags["--jq"]], input=out, capture_output=True, text=True, check=False)
            out = done.stdout.rstrip("\n")
            out = "" if out == "null" else out  # gh prints nothing for a null result
        print(out)
        return 0
    body = Path(flags["--body-file"]).read_text(encoding="utf-8") if "--body-file" in flags else None
    if argv[1] == "create":
        if not {"--head", "--base", "--title"} <= set(flags) or body is None:
            return fail("create needs --head, --base, --title and --body-file in the workflows")
        heads = subprocess.run(["git", "ls-remote", "--heads", os.environ["GH_STANDIN_REMOTE"], flags["--head"]],
                               capture_output=True, text=True, check=True).stdout
        if not heads.strip():
            return fail(f"pull request create failed: GraphQL: Head sha can't be blank, No commits between "
                        f"{flags['--base']} and {flags['--head']}")
        number = 1 + max((p["number"] for p in pulls), default=0)
        pulls.append({"number": number, "head": flags["--head"], "base": flags["--base"], "title": flags["--title"],
                      "body": body, "state": "open"})
        print(f"http://127.0.0.1/{os.environ['GH_REPO']}/pull/{number}")
    else:
        match = [p for p in pulls if rest and str(p["number"]) == rest[0]]
        if not match:
            return fail(f"no pull requests found for {rest[:1]}")
        if body is not None:
            match[0]["body"] = body
        if "--title" in flags:
            match[0]["title"] = flags["--title"]
    state_path.write_text(json.dumps(state, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
