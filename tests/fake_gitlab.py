"""A stateful fake GitLab v4 API on 127.0.0.1 for driving the real python-gitlab client through Sieve's host.

It keeps real state (merge requests whose diffs come from a real git repository, discussions, notes, award
emoji, members, commit statuses), validates diff positions against the diff the way GitLab does (a line not
in the diff → 400 "line_code can't be blank"), paginates every list (``x-next-page`` and ``Link``), records
every request, and injects faults: 429 with or without ``Retry-After``, 502, timeouts, and a crash after N
writes. It runs on a daemon thread, on port 0, and stops by itself after ``lifetime`` seconds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

#: GitLab refuses notes over 1,000,000 characters (400, like its other validation errors).
MAX_NOTE = 1_000_000
TOO_LONG = "400 Bad request - Note {:note=>[\"is too long (maximum is 1000000 characters)\"]}"
BAD_LINE = "400 Bad request - Note {:line_code=>[\"can't be blank\", \"must be a valid line code\"]}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def git_file_diffs(repo: Path, base: str, head: str) -> list[dict[str, Any]]:
    """``git diff base head`` split into GitLab's per-file entries (diff text from the first @@ on)."""
    out = subprocess.run(["git", "-C", str(repo), "diff", "--full-index", "-M", base, head],
                         check=True, capture_output=True).stdout.decode()
    entries = []
    for chunk in re.split(r"^diff --git ", out, flags=re.MULTILINE)[1:]:
        lines = chunk.split("\n")
        a, b = re.match(r"a/(\S+) b/(\S+)", lines[0]).groups()
        entry = {"old_path": a, "new_path": b, "a_mode": "100644", "b_mode": "100644", "new_file": False,
                 "renamed_file": False, "deleted_file": False, "generated_file": False, "diff": ""}
        for i, line in enumerate(lines[1:], 1):
            if line.startswith("new file mode "):
                entry.update(new_file=True, a_mode="0", b_mode=line.split()[-1])
            elif line.startswith("deleted file mode "):
                entry.update(deleted_file=True, a_mode=line.split()[-1], b_mode="0")
            elif line.startswith("rename from "):
                entry["renamed_file"] = True
            elif line.startswith("@@"):
                entry["diff"] = "\n".join(lines[i:]).rstrip("\n") + "\n"
                break
        entries.append(entry)
    return entries


def diff_lines(text: str) -> dict[tuple[int | None, int | None], str]:
    """(old_line, new_line) as GitLab positions name them → line_code counters "old_new", per kind."""
    valid: dict[tuple[int | None, int | None], str] = {}
    old = new = 0
    for line in text.split("\n"):
        m = re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", line)
        if m:
            old, new = int(m.group(1)), int(m.group(2))
        elif line.startswith("+"):
            valid[(None, new)] = f"{old}_{new}"
            new += 1
        elif line.startswith("-"):
            valid[(old, None)] = f"{old}_{new}"
            old += 1
        elif line.startswith(" "):
            valid[(old, new)] = f"{old}_{new}"
            old, new = old + 1, new + 1
    return valid


@dataclass
class Fault:
    kind: str  # "429", "429-retry-after", "502", "timeout", "502-after" (the request lands, then 502 is answered)
    method: str = "*"
    path: str = ".*"
    times: int = 1


@dataclass
class MR:
    project_id: int
    iid: int
    title: str
    base: str
    head: str
    diffs: list[dict[str, Any]]
    author: dict[str, Any]
    discussions: list[dict[str, Any]] = field(default_factory=list)
    updated_at: str = field(default_factory=_now)
    source_branch: str = ""
    target_branch: str = ""
    description: str = ""
    state: str = "opened"


class FakeGitLab:
    """The state and the server. Use as a context manager; ``url`` is the instance URL for python-gitlab."""

    def __init__(self, *, max_per_page: int = 100, lifetime: float = 300.0, timeout_delay: float = 1.0) -> None:
        self.max_per_page = max_per_page
        self.timeout_delay = timeout_delay
        self.lifetime = lifetime
        self.users: dict[str, dict[str, Any]] = {}  # token → user
        self.projects: dict[int, dict[str, Any]] = {}
        self.mrs: dict[tuple[int, int], MR] = {}
        self.statuses: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []
        self.line_code_required = False
        self.file_positions = True
        self.fail_writes_after: int | None = None
        self.write_latency = 0.0  # seconds each write takes before it lands (overlapping runs interleave)
        self.writes_done = 0
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # --- setup ---------------------------------------------------------------------------------------------

    def add_user(self, username: str, token: str) -> dict[str, Any]:
        user = {"id": next(self._ids), "username": username, "name": username.title(), "state": "active"}
        self.users[token] = user
        return user

    def add_project(self, path: str, repo: Path, members: dict[int, int] | None = None) -> dict[str, Any]:
        project = {"id": next(self._ids), "path_with_namespace": path, "repo": repo, "members": members or {}}
        self.projects[project["id"]] = project
        return project

    def add_mr(self, project: dict[str, Any], iid: int, base: str, head: str, author: dict[str, Any],
               title: str = "Change") -> MR:
        mr = MR(project["id"], iid, title, base, head, git_file_diffs(project["repo"], base, head), author)
        self.mrs[(project["id"], iid)] = mr
        return mr

    def push(self, mr: MR, head: str) -> None:
        """A new push to the merge request's branch: the diff is recomputed from git."""
        project = self.projects[mr.project_id]
        mr.head, mr.diffs, mr.updated_at = head, git_file_diffs(project["repo"], mr.base, head), _now()

    def award(self, note: dict[str, Any], user: dict[str, Any], name: str) -> dict[str, Any]:
        award = {"id": next(self._ids), "name": name, "user": dict(user), "created_at": _now(),
                 "updated_at": _now(), "awardable_type": "Note", "awardable_id": note["id"]}
        note.setdefault("_awards", []).append(award)
        return award

    def unaward(self, note: dict[str, Any], award_id: int) -> None:
        note["_awards"] = [a for a in note.get("_awards", []) if a["id"] != award_id]

    def reply(self, mr: MR, discussion: dict[str, Any], user: dict[str, Any], body: str) -> dict[str, Any]:
        note = self._note(mr, user, body, None, "DiscussionNote")
        discussion["notes"].append(note)
        return note

    def inject(self, kind: str, method: str = "*", path: str = ".*", times: int = 1) -> None:
        self.faults.append(Fault(kind, method, path, times))

    def writes(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] != "GET"]

    # --- server --------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        timer = threading.Timer(self.lifetime, self.stop)
        timer.daemon = True
        timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- state helpers used by the handler -----------------------------------------------------------------

    def _note(self, mr: MR, user: dict[str, Any], body: str, position: dict[str, Any] | None,
              kind: str | None) -> dict[str, Any]:
        mr.updated_at = _now()
        return {"id": next(self._ids), "type": kind, "body": body, "author": dict(user), "created_at": _now(),
                "updated_at": _now(), "system": False, "noteable_type": "MergeRequest", "noteable_iid": mr.iid,
                "resolvable": True, "resolved": False, "position": position}

    def check_position(self, mr: MR, pos: dict[str, Any]) -> str | None:
        """None when GitLab would accept the position, else the 400 message it would give."""
        if (pos.get("base_sha"), pos.get("start_sha"), pos.get("head_sha")) != (mr.base, mr.base, mr.head):
            return "400 Bad request - Note {:position=>[\"is invalid\"]}"
        entry = next((d for d in mr.diffs if d["new_path"] == pos.get("new_path")), None)
        if entry is None or entry["old_path"] != pos.get("old_path"):
            return BAD_LINE
        if pos.get("position_type") == "file":
            return None if self.file_positions else "400 Bad request - Note {:position=>[\"is invalid\"]}"
        valid = diff_lines(entry["diff"])
        counters = valid.get((pos.get("old_line"), pos.get("new_line")))
        if counters is None:
            return BAD_LINE
        code = f"{hashlib.sha1(entry['new_path'].encode()).hexdigest()}_{counters}"
        if ("line_code" in pos and pos["line_code"] != code) or (self.line_code_required and "line_code" not in pos):
            return BAD_LINE
        line_range = pos.get("line_range")
        if line_range:
            start, end = line_range.get("start") or {}, line_range.get("end") or {}
            start_counters = valid.get((start.get("old_line"), start.get("new_line")))
            if start_counters is None or end.get("line_code") != code:
                return "400 Bad request - Note {:line_range=>[\"is invalid\"]}"
        return None


class _Handler(BaseHTTPRequestHandler):
    state: FakeGitLab
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes; avoid 40 ms delayed-ACK stalls

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing ------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        raw_parts = split.path.split("/")[3:]  # drop "", "api", "v4"
        parts = [unquote(p) for p in raw_parts]
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.body = json.loads(raw) if raw and "json" in (self.headers.get("Content-Type") or "") else {}
        if not self.body and raw:
            self.body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        path = "/" + "/".join(parts)
        fs = self.state
        with fs._lock:
            fault = next((f for f in fs.faults if f.times > 0 and f.method in ("*", method)
                          and re.search(f.path, path)), None)
            if fault:
                fault.times -= 1
            user = fs.users.get(self.headers.get("PRIVATE-TOKEN", ""))
        if fault and fault.kind != "502-after":
            return self._fault(method, path, fault)
        if user is None:
            return self._send(method, path, 401, {"message": "401 Unauthorized"})
        if method != "GET" and fs.fail_writes_after is not None and fs.writes_done >= fs.fail_writes_after:
            return self._send(method, path, 500, {"message": "500 Internal Server Error"})
        if method != "GET" and fs.write_latency:
            time.sleep(fs.write_latency)  # outside the lock
        with fs._lock:
            status, payload, extra = _route(fs, method, parts, self.query, self.body, user)
            if method != "GET" and status < 300:
                fs.writes_done += 1
        if fault:  # "502-after": it landed, but the answer is lost
            return self._send(method, path, 502, {"message": "502 Bad Gateway"})
        if isinstance(payload, list):
            payload, extra = self._page(payload, split)
        self._send(method, path, status, payload, extra)

    def _fault(self, method: str, path: str, fault: Fault) -> None:
        if fault.kind == "timeout":
            time.sleep(self.state.timeout_delay)
            self.state.requests.append((method, path, 0))
            self.close_connection = True
            return
        if fault.kind == "502":
            return self._send(method, path, 502, {"message": "502 Bad Gateway"})
        headers = {"Retry-After": "1"} if fault.kind == "429-retry-after" else {}
        self._send(method, path, 429, {"message": "429 Too Many Requests"}, headers)

    def _page(self, items: list[Any], split: Any) -> tuple[list[Any], dict[str, str]]:
        per_page = min(int(self.query.get("per_page", 20)), self.state.max_per_page)
        page = max(1, int(self.query.get("page", 1)))
        pages = max(1, -(-len(items) // per_page))
        headers = {"x-page": str(page), "x-per-page": str(per_page), "x-total": str(len(items)),
                   "x-total-pages": str(pages), "x-next-page": str(page + 1) if page < pages else "",
                   "x-prev-page": str(page - 1) if page > 1 else ""}
        if page < pages:
            query = dict(self.query, page=str(page + 1), per_page=str(per_page))
            next_url = f"http://{self.headers['Host']}{split.path}?{urlencode(query)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return items[(page - 1) * per_page: page * per_page], headers

    def _send(self, method: str, path: str, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.state.requests.append((method, path, status))
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        kind = "application/octet-stream" if isinstance(payload, bytes) else "application/json"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _public(note: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in note.items() if not k.startswith("_")}


def _route(fs: FakeGitLab, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any],
           user: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    """The endpoints Sieve uses. Returns (status, payload, headers)."""
    if parts == ["user"]:
        return 200, user, {}
    if len(parts) < 2 or parts[0] != "projects":
        return 404, {"message": "404 Not Found"}, {}
    project = next((p for p in fs.projects.values()
                    if str(p["id"]) == parts[1] or p["path_with_namespace"] == parts[1]), None)
    if project is None:
        return 404, {"message": "404 Project Not Found"}, {}
    rest = parts[2:]
    if rest[:2] == ["members", "all"] and len(rest) == 3:
        level = project["members"].get(int(rest[2]))
        return (200, {"id": int(rest[2]), "access_level": level}, {}) if level else (404, {"message": "404"}, {})
    if rest[:2] == ["repository", "files"] and len(rest) == 4 and rest[3] == "raw":
        shown = subprocess.run(["git", "-C", str(project["repo"]), "show", f"{query.get('ref')}:{rest[2]}"],
                               check=False, capture_output=True)
        return (200, shown.stdout, {}) if shown.returncode == 0 else (404, {"message": "404 File Not Found"}, {})
    if rest[:2] == ["repository", "commits"] and rest[3:] == ["statuses"] and method == "GET":
        return 200, [dict(s) for s in reversed(fs.statuses) if s["sha"] == rest[2]], {}  # newest first
    if rest[:1] == ["statuses"] and method == "POST":
        status = {"id": next(fs._ids), "sha": rest[1], "status": body.get("state"), "name": body.get("name"),
                  "description": body.get("description")}
        fs.statuses.append(status)
        return 201, status, {}
    if rest == ["merge_requests"] and method == "POST":
        return _open_mr(fs, project, body, user)
    if rest == ["merge_requests"]:
        wanted = {k: query[k] for k in ("state", "source_branch", "target_branch") if k in query}
        found = [m for m in fs.mrs.values() if m.project_id == project["id"]
                 and m.updated_at >= query.get("updated_after", "")
                 and all(getattr(m, k) == v for k, v in wanted.items() if not (k == "state" and v == "all"))]
        return 200, [_mr_json(fs, m) for m in sorted(found, key=lambda m: m.iid)], {}
    if len(rest) >= 2 and rest[0] == "merge_requests":
        mr = fs.mrs.get((project["id"], int(rest[1])))
        if mr is None:
            return 404, {"message": "404 Not found"}, {}
        return _mr_route(fs, method, mr, rest[2:], body, user)
    return 404, {"message": "404 Not Found"}, {}


def _open_mr(fs: FakeGitLab, project: dict[str, Any], body: dict[str, Any],
             user: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    """POST merge_requests: GitLab refuses a missing branch (400) and a second open one per source branch (409)."""
    source, target = str(body.get("source_branch", "")), str(body.get("target_branch", ""))
    if not source or not target or not body.get("title"):
        return 400, {"message": "source_branch, target_branch and title are missing"}, {}
    shas = []
    for branch in (target, source):
        found = subprocess.run(["git", "-C", str(project["repo"]), "rev-parse", "--verify", "-q",
                                f"refs/heads/{branch}"], check=False, capture_output=True, text=True)
        if found.returncode != 0:
            return 400, {"message": [f"{'Target' if branch == target else 'Source'} branch is invalid"]}, {}
        shas.append(found.stdout.strip())
    taken = [m for m in fs.mrs.values() if m.project_id == project["id"] and m.state == "opened"
             and m.source_branch == source and m.target_branch == target]
    if taken:
        return 409, {"message": [f"Another open merge request already exists for this source branch: !{taken[0].iid}"]}, {}
    iid = 1 + max((m.iid for m in fs.mrs.values() if m.project_id == project["id"]), default=0)
    mr = MR(project["id"], iid, str(body["title"]), shas[0], shas[1], git_file_diffs(project["repo"], *shas), dict(user),
            source_branch=source, target_branch=target, description=str(body.get("description", "")))
    fs.mrs[(project["id"], iid)] = mr
    return 201, _mr_json(fs, mr), {}


def _mr_json(fs: FakeGitLab, mr: MR) -> dict[str, Any]:
    project = fs.projects[mr.project_id]
    return {"id": mr.iid + 10_000, "iid": mr.iid, "project_id": mr.project_id, "title": mr.title, "state": mr.state,
            "source_branch": mr.source_branch, "target_branch": mr.target_branch, "description": mr.description,
            "web_url": f"http://gitlab.test/{project['path_with_namespace']}/-/merge_requests/{mr.iid}",
            "author": mr.author, "source_project_id": mr.project_id, "target_project_id": mr.project_id,
            "sha": mr.head, "updated_at": mr.updated_at,
            "diff_refs": {"base_sha": mr.base, "start_sha": mr.base, "head_sha": mr.head}}


def _find_note(mr: MR, note_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    for discussion in mr.discussions:
        for note in discussion["notes"]:
            if str(note["id"]) == note_id:
                return discussion, note
    return None


def _mr_route(fs: FakeGitLab, method: str, mr: MR, rest: list[str], body: dict[str, Any],
              user: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    if not rest and method == "GET":
        return 200, _mr_json(fs, mr), {}
    if not rest and method == "PUT":
        mr.title, mr.description = str(body.get("title", mr.title)), str(body.get("description", mr.description))
        mr.updated_at = _now()
        return 200, _mr_json(fs, mr), {}
    if rest == ["diffs"]:
        return 200, [dict(d) for d in mr.diffs], {}
    if rest == ["versions"]:
        return 200, [{"id": 1, "head_commit_sha": mr.head, "base_commit_sha": mr.base}], {}
    if rest[:1] == ["versions"] and len(rest) == 2:
        return 200, {"id": 1, "diffs": [dict(d) for d in mr.diffs]}, {}
    if rest == ["discussions"] and method == "GET":
        return 200, [{"id": d["id"], "individual_note": d["individual_note"],
                      "notes": [_public(n) for n in d["notes"]]} for d in mr.discussions], {}
    if rest == ["discussions"] and method == "POST" or rest == ["notes"] and method == "POST":
        if len(str(body.get("body", ""))) > MAX_NOTE:
            return 400, {"message": TOO_LONG}, {}
        position = body.get("position")
        if position:
            refused = fs.check_position(mr, position)
            if refused:
                return 400, {"message": refused}, {}
        note = fs._note(mr, user, str(body.get("body", "")), position, "DiffNote" if position else None)
        discussion = {"id": hashlib.sha1(str(note["id"]).encode()).hexdigest(), "individual_note": rest == ["notes"],
                      "notes": [note]}
        mr.discussions.append(discussion)
        payload = _public(note) if rest == ["notes"] else {**discussion, "notes": [_public(note)]}
        return 201, payload, {}
    if rest[:1] == ["discussions"] and len(rest) == 2 and method == "PUT":
        discussion = next((d for d in mr.discussions if d["id"] == rest[1]), None)
        if discussion is None:
            return 404, {"message": "404 Not found"}, {}
        resolved = str(body.get("resolved")).lower() == "true"
        for note in discussion["notes"]:
            note["resolved"] = resolved
        return 200, {**discussion, "notes": [_public(n) for n in discussion["notes"]]}, {}
    if rest[:1] == ["notes"] and len(rest) >= 2:
        found = _find_note(mr, rest[1])
        if found is None:
            return 404, {"message": "404 Note Not Found"}, {}
        _, note = found
        if len(rest) == 2 and method == "DELETE":
            if note["author"]["id"] != user["id"]:
                return 403, {"message": "403 Forbidden"}, {}
            discussion, _ = found
            discussion["notes"].remove(note)
            if not discussion["notes"]:
                mr.discussions.remove(discussion)
            return 204, b"", {}
        if len(rest) == 2 and method == "PUT" and len(str(body.get("body", ""))) > MAX_NOTE:
            return 400, {"message": TOO_LONG}, {}
        if len(rest) == 2 and method == "PUT":
            note.update(body=str(body.get("body", note["body"])), updated_at=_now())
            mr.updated_at = _now()
            return 200, _public(note), {}
        if rest[2:] == ["award_emoji"] and method == "GET":
            return 200, list(note.get("_awards", [])), {}
    return 404, {"message": "404 Not Found"}, {}
