"""A stateful fake GitHub REST server on 127.0.0.1 that validates every request and response.

What it keeps: one repository, pull requests (diffs made by real git in the tests), review comments with
replies, reviews, issue comments, reactions with users, commit statuses, file contents. Review-comment lines
are checked against the pull request's diff (422 with GitHub's error shape when a line is not in it), lists
paginate with GitHub's Link headers, and every request and response is checked with openapi-core against
``github-api-subset.nullable-enum-fixed.json``. Validation errors are collected; :meth:`FakeGitHub.stop`
raises if there were any, so a test fails on a shape Sieve or the fake got wrong.

Known spec exceptions (the written-down list; see tests/apispecs/README.md):
1. ``GET pulls/{n}`` with ``Accept: application/vnd.github.diff`` answers a diff: only prose in the spec, so
   that response body is not validated (the request is).
2. ``GET /repos/{o}/{r}/pulls/comments`` (all review comments of a repository) is not in the cut-down spec;
   it is added here as a copy of the per-pull listing, which has the same item schema on GitHub.
3. ``GET /repos/{o}/{r}/contents/{path}`` is not in the subset and is served unvalidated.
4. ``line``/``original_line``/``position`` of review comments are null for outdated and file-level comments
   although the spec does not declare them nullable: they are made nullable here.
5. Fault responses (429, 502, 504, secondary-limit 403) and statuses an operation does not declare are checked
   only for GitHub's basic error shape (``message``, ``documentation_url``).
"""

from __future__ import annotations

import copy
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode

from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

SPEC_PATH = Path(__file__).resolve().parent / "apispecs" / "github-api-subset.nullable-enum-fixed.json"
DOCS = "https://docs.github.com/rest"
_NOW = "2024-01-01T00:00:00Z"


# ---------------------------------------------------------------- the spec, with the exceptions applied
def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["servers"] = [{"url": "http://127.0.0.1:{port}", "variables": {"port": {"default": "80"}}}]
    per_pull = spec["paths"]["/repos/{owner}/{repo}/pulls/{pull_number}/comments"]["get"]
    repo_wide = copy.deepcopy(per_pull)  # exception 2
    repo_wide["operationId"] = "pulls/list-review-comments-for-repo"
    repo_wide["parameters"] = [p for p in repo_wide["parameters"] if "pull-number" not in p.get("$ref", "")]
    spec["paths"]["/repos/{owner}/{repo}/pulls/comments"] = {"get": repo_wide}
    for name in ("pull-request-review-comment", "review-comment"):  # exception 4
        props = spec["components"]["schemas"][name]["properties"]
        for key in ("line", "original_line", "position", "original_position"):
            if key in props:
                props[key]["nullable"] = True
    return spec


class Example:
    """Builds a minimal instance of a component schema (every required property), then overlays real values."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.schemas = spec["components"]["schemas"]

    def make(self, schema: str, /, **values: Any) -> dict[str, Any]:
        base = self._value(self.schemas[schema], schema)
        base.update(values)
        return base

    def _value(self, schema: dict[str, Any], key: str = "x", depth: int = 0) -> Any:
        if "$ref" in schema:
            return self._value(self.schemas[schema["$ref"].rsplit("/", 1)[1]], key, depth)
        for combo in ("allOf", "oneOf", "anyOf"):
            if combo in schema:
                parts = [self._value(s, key, depth) for s in schema[combo][: None if combo == "allOf" else 1]]
                if all(isinstance(p, dict) for p in parts):
                    return {k: v for p in parts for k, v in p.items()}
                return parts[0]
        if "enum" in schema:
            return next(v for v in schema["enum"] if v is not None)
        kind = schema.get("type", "object")
        if kind == "object":
            if depth > 6:
                return {}
            props = schema.get("properties", {})
            return {k: self._value(props.get(k, {"type": "string"}), k, depth + 1) for k in schema.get("required", [])}
        if kind == "array":
            return []
        if kind in ("integer", "number"):
            return 1
        if kind == "boolean":
            return False
        fmt = schema.get("format")
        if fmt == "date-time":
            return _NOW
        if fmt == "uri" or key.endswith("url"):
            return f"https://github.invalid/{key}"
        if fmt == "email":
            return "someone@example.invalid"
        return key


class _QuietHandler(WSGIRequestHandler):
    """No access log: the fake records requests itself, and test output stays readable."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


# ---------------------------------------------------------------- state
@dataclass
class Pull:
    number: int
    title: str
    head_sha: str
    base_sha: str
    diff: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    author: str = "contributor"
    head_repo: str = ""  # "" = same repository; "fork-owner/repo" for a fork


@dataclass
class Fault:
    """One injected fault. ``kind``: 429, 429-bare, secondary, primary, 502, timeout, reset, reset-after,
    502-after (the request lands, then 502 is answered), readonly. Matches ``method`` and the ``path`` regex; ``write_number`` picks the Nth write instead."""

    kind: str
    method: str = "*"
    path: str = ".*"
    times: int = 1
    write_number: int | None = None
    retry_after: int | None = 1


def diff_lines(diff: bytes) -> dict[tuple[str, str], dict[int, int]]:
    """(path, side) → {line: hunk index} for every line a review comment may use (independent of bot.diff)."""
    out: dict[tuple[str, str], dict[int, int]] = {}
    path, old, new, hunk = None, 0, 0, -1
    for raw in diff.decode("utf-8", "replace").split("\n"):
        if raw.startswith("+++ "):
            path = raw[6:] if raw.startswith("+++ b/") else None
        elif raw.startswith("--- ") and path is None:
            continue
        elif raw.startswith("@@"):
            m = re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)", raw)
            old, new, hunk = int(m.group(1)), int(m.group(2)), hunk + 1
        elif path and raw[:1] in ("+", "-", " ") and hunk >= 0:
            if raw[:1] in ("-", " "):
                out.setdefault((path, "LEFT"), {})[old] = hunk
                old += 1
            if raw[:1] in ("+", " "):
                out.setdefault((path, "RIGHT"), {})[new] = hunk
                new += 1
        elif raw.startswith("diff --git"):
            path, hunk = None, -1
    return out


class FakeGitHub:
    """Start with ``FakeGitHub(...).start()`` or as a context manager; ``base_url`` is for the client."""

    def __init__(self, owner: str = "octo", name: str = "app", *, spec_path: Path = SPEC_PATH) -> None:
        self.owner, self.name = owner, name
        self.full_name = f"{owner}/{name}"
        self.spec = load_spec(spec_path)
        self.openapi = OpenAPI.from_dict(self.spec, config=Config(spec_validator_cls=None))
        self.example = Example(self.spec)
        self.tokens: dict[str, dict[str, Any]] = {}
        self.associations: dict[str, str] = {owner: "OWNER"}
        self.roles: dict[str, str] = {}  # login → repository role (see set_permission)
        self.legacy_permissions: dict[str, str] = {}  # login → a ``permission`` value other than the role's
        self.hidden_permissions: set[str] = set()  # logins whose permission answers 404 ("*": everyone's)
        self.user_ids: dict[str, int] = {}  # login → numeric id, where a test sets one (see set_user_id)
        self.pulls: dict[int, Pull] = {}
        self.review_comments: dict[int, dict[str, Any]] = {}
        self.issue_comments: dict[int, dict[str, Any]] = {}
        self.reviews: list[dict[str, Any]] = []
        self.reactions: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self.faults: list[Fault] = []
        self.reject_lines: set[tuple[str, int]] = set()  # 422 for these lines although they are in the diff
        self.reject_files: set[str] = set()  # 422 for file-level comments on these paths
        self.requests: list[tuple[str, str, int]] = []  # method, path (with query), status
        self.errors: list[str] = []
        self.delay = 1.3  # seconds a "timeout" fault sleeps (past the client's timeout in the tests)
        self.review_latency = 0.0  # seconds a review POST takes before it lands (requests overlap meanwhile)
        self._ids = 1000
        self._writes = 0
        self._lock = threading.RLock()
        self._server = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeGitHub:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self, *, check: bool = True) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if check and self.errors:
            raise AssertionError("GitHub spec validation failed:\n" + "\n".join(self.errors[:20]))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(check=exc[0] is None)

    # ------------------------------------------------------------ set-up helpers for tests
    def add_token(self, token: str, login: str, *, readonly: bool = False, actions: bool = False) -> None:
        """``actions``: like an Actions GITHUB_TOKEN, ``GET /user`` is refused (403)."""
        self.tokens[token] = {"login": login, "readonly": readonly, "actions": actions}

    def add_pull(self, number: int, *, diff: bytes, head_sha: str, base_sha: str, files: dict[str, bytes] | None = None,
                 title: str = "A change", author: str = "contributor", head_repo: str = "") -> Pull:
        self.pulls[number] = Pull(number, title, head_sha, base_sha, diff, dict(files or {}), author, head_repo)
        return self.pulls[number]

    def push(self, number: int, *, diff: bytes, head_sha: str, files: dict[str, bytes] | None = None) -> None:
        """A new push: comments whose line left the diff become outdated (line null), as on GitHub."""
        pull = self.pulls[number]
        pull.diff, pull.head_sha = diff, head_sha
        pull.files = dict(files or pull.files)
        valid = diff_lines(diff)
        for c in self.review_comments.values():
            on_pull = c["pull_request_url"].endswith(f"/pulls/{number}") and c.get("line") is not None
            if on_pull and c["line"] not in valid.get((c["path"], c.get("side") or "RIGHT"), {}):
                c["line"] = None

    def set_user_id(self, login: str, uid: int) -> None:
        """Give ``login`` this numeric id from now on (a renamed account keeps its id; a login taken over by
        someone else gets a new one)."""
        self.user_ids[login] = uid

    def user(self, login: str) -> dict[str, Any]:
        uid = self.user_ids.get(login, sum(login.encode()) + 10)
        kind = "Bot" if login.endswith("[bot]") else "User"
        return self.example.make("simple-user", login=login, id=uid, type=kind, site_admin=False,
                                 html_url=f"https://github.invalid/{login}", url=f"{self.base_url}/users/{login}")

    def add_review_comment(self, number: int, login: str, body: str, *, path: str = "x.py", line: int | None = 1,
                           in_reply_to: int | None = None) -> dict[str, Any]:
        with self._lock:
            return self._new_review_comment(self.pulls[number], login, {"body": body, "path": path, "line": line,
                                                                        "side": "RIGHT"}, in_reply_to)

    def react(self, kind: str, comment_id: int, login: str, content: str) -> dict[str, Any]:
        """``kind``: "pulls" (review comment) or "issues" (issue comment)."""
        with self._lock:
            reaction = self.example.make("reaction", id=self._next_id(), user=self.user(login), content=content,
                                         created_at=_NOW, node_id=f"R_{self._ids}")
            self.reactions.setdefault((kind, comment_id), []).append(reaction)
            return reaction

    def set_permission(self, login: str, role: str, *, permission: str | None = None) -> None:
        """Give ``login`` a repository role: admin, maintain, write, triage, read or none; ``permission`` reports
        another legacy ``permission`` value beside it (one a client may not know)."""
        self.roles[login] = role
        if permission is not None:
            self.legacy_permissions[login] = permission

    def hide_permission(self, login: str = "*") -> None:
        """``GET collaborators/{login}/permission`` answers 404 for ``login`` ("*": for everyone), as GitHub does
        for a deleted account or a token that may not see the repository's collaborators."""
        self.hidden_permissions.add(login)

    def writes(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] != "GET"]

    def reset_log(self) -> None:
        self.requests.clear()

    # ------------------------------------------------------------ WSGI entry
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._handle(request, environ)
        except Exception as exc:  # noqa: BLE001 — a bug in the fake or a request it cannot read: fail the test, loudly
            import traceback

            self.errors.append(f"fake crashed on {request.method} {request.full_path}: {exc!r}\n"
                               + traceback.format_exc(limit=4))
            response = _json({"message": f"fake error: {exc!r}", "documentation_url": DOCS}, 500)
        if response is None:
            return []  # the connection was reset on purpose
        return response(environ, start_response)

    def _handle(self, request: Request, environ: dict[str, Any]) -> Response | None:
        target = request.full_path.rstrip("?")
        fault = self._take_fault(request)
        if fault is not None and fault.kind in ("reset", "timeout"):
            self.requests.append((request.method, target, 0))
            if fault.kind == "timeout":
                time.sleep(self.delay)
                return _json({"message": "Gateway Timeout", "documentation_url": DOCS}, 504)
            _reset(environ)
            return None
        if fault is not None and fault.kind not in ("reset-after", "502-after"):
            response = self._fault_response(fault)
        else:
            self._validate_request(request)
            response = self._route(request)
            self._validate_response(request, response)
            if fault is not None and fault.kind == "502-after":
                response = self._fault_response(Fault("502"))
        self.requests.append((request.method, target, response.status_code))
        if fault is not None and fault.kind == "reset-after":
            _reset(environ)
            return None
        return response

    def _take_fault(self, request: Request) -> Fault | None:
        with self._lock:
            is_write = request.method != "GET"
            if is_write:
                self._writes += 1
            for fault in self.faults:
                if fault.times <= 0:
                    continue
                if fault.write_number is not None:
                    hit = is_write and self._writes == fault.write_number
                else:
                    hit = fault.method in ("*", request.method) and re.search(fault.path, request.path) is not None
                if hit:
                    fault.times -= 1
                    return fault
        return None

    def _fault_response(self, fault: Fault) -> Response:
        if fault.kind == "502":
            return _json({"message": "Server Error", "documentation_url": DOCS}, 502)
        if fault.kind == "readonly":
            return _json({"message": "Resource not accessible by integration", "documentation_url": DOCS,
                          "status": "403"}, 403)
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4000", "x-ratelimit-resource": "core"}
        if fault.kind == "primary":
            headers.update({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 2)})
            body = {"message": "API rate limit exceeded for user ID 1.", "documentation_url": DOCS}
            return _json(body, 403, headers)
        if fault.retry_after is not None and fault.kind != "429-bare":
            headers["retry-after"] = str(fault.retry_after)
        if fault.kind == "secondary":
            body = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                               "again.", "documentation_url": DOCS}
            return _json(body, 403, headers)
        return _json({"message": "Too Many Requests", "documentation_url": DOCS}, 429, headers)

    # ------------------------------------------------------------ validation
    def _validate_request(self, request: Request) -> None:
        if request.path.startswith(f"/repos/{self.full_name}/contents/"):
            return  # exception 3
        for error in self.openapi.iter_request_errors(WerkzeugOpenAPIRequest(request)):
            self.errors.append(f"request {request.method} {request.full_path}: {_describe(error)}")

    def _validate_response(self, request: Request, response: Response) -> None:
        if request.path.startswith(f"/repos/{self.full_name}/contents/"):
            return  # exception 3
        if "vnd.github.diff" in request.headers.get("Accept", "") and response.status_code == 200:
            return  # exception 1
        if response.status_code >= 400 and not self._declared(request, response.status_code):
            body = response.get_json(silent=True) or {}
            if not {"message", "documentation_url"} <= set(body):  # exception 5
                self.errors.append(f"response {request.method} {request.path}: error body {body}")
            return
        for error in self.openapi.iter_response_errors(WerkzeugOpenAPIRequest(request),
                                                       WerkzeugOpenAPIResponse(response)):
            self.errors.append(f"response {request.method} {request.path} {response.status_code}: {_describe(error)}")

    def _declared(self, request: Request, status: int) -> bool:
        for template, item in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, request.path) and request.method.lower() in item:
                return str(status) in item[request.method.lower()]["responses"]
        return False

    # ------------------------------------------------------------ routing
    def _route(self, request: Request) -> Response:
        token = re.sub(r"^(token|bearer)\s+", "", request.headers.get("Authorization", ""), flags=re.IGNORECASE)
        caller = self.tokens.get(token)
        if caller is None:
            return _json({"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}, 401)
        if request.method != "GET" and caller["readonly"]:
            return _json({"message": "Resource not accessible by integration", "documentation_url": DOCS,
                          "status": "403"}, 403)
        prefix = f"/repos/{self.full_name}"
        if request.method == "POST" and request.path.endswith("/reviews") and self.review_latency:
            time.sleep(self.review_latency)  # outside the lock: overlapping reviews land after the wait
        too_long = _too_long(request)
        if too_long is not None:
            return too_long
        for method, pattern, handler in ROUTES:
            if method != request.method:
                continue
            match = re.fullmatch(pattern.replace("{repo}", re.escape(prefix)), request.path)
            if match:
                with self._lock:
                    return handler(self, request, caller["login"], caller, *match.groups())
        return _json({"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404)

    # ------------------------------------------------------------ shared by the route handlers
    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def url(self, path: str) -> str:
        return f"{self.base_url}/repos/{self.full_name}{path}"

    def _new_review_comment(self, pull: Pull, login: str, data: dict[str, Any], in_reply_to: int | None,
                            review_id: int | None = None) -> dict[str, Any]:
        cid = self._next_id()
        line = data.get("line")
        comment = self.example.make(
            "pull-request-review-comment", id=cid, node_id=f"C_{cid}", body=data["body"], path=data["path"],
            line=line, original_line=line, position=line, original_position=line,
            side=data.get("side") or "RIGHT", start_line=data.get("start_line"), start_side=data.get("start_side"),
            original_start_line=data.get("start_line"), subject_type=data.get("subject_type", "line"),
            commit_id=pull.head_sha, original_commit_id=pull.head_sha, diff_hunk="@@ -1 +1 @@",
            user=self.user(login), author_association=self.associations.get(login, "NONE"),
            created_at=_stamp(), updated_at=_stamp(), pull_request_review_id=review_id,
            url=self.url(f"/pulls/comments/{cid}"), html_url=f"https://github.invalid/{self.full_name}/pull/"
            f"{pull.number}#discussion_r{cid}", pull_request_url=self.url(f"/pulls/{pull.number}"),
            reactions=self.rollup("pulls", cid, f"/pulls/comments/{cid}/reactions"))
        if in_reply_to is not None:
            comment["in_reply_to_id"] = in_reply_to
        self.review_comments[cid] = comment
        return comment

    def rollup(self, kind: str, cid: int, path: str) -> dict[str, Any]:
        found = self.reactions.get((kind, cid), [])
        counts = {key: sum(1 for r in found if r["content"] == key) for key in
                  ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket")}
        return {"url": self.url(path), "total_count": len(found), **counts}

    def paginate(self, request: Request, items: list[Any]) -> Response:
        """GitHub's pagination: per_page (default 30, at most 100), page, and a Link header."""
        per_page = max(1, min(100, int(request.args.get("per_page", 30))))
        page = max(1, int(request.args.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def link(n: int, rel: str) -> str:
            query = {**request.args.to_dict(), "per_page": per_page, "page": n}
            return f'<{self.base_url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        if page > 1:
            links.append(link(page - 1, "prev"))
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links.append(link(1, "first"))
        return _json(chunk, 200, {"Link": ", ".join(links)} if links else {})


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _reset(environ: dict[str, Any]) -> None:
    """Drop the connection with a TCP reset (what a crash or a proxy failure looks like to the client)."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _describe(error: Exception) -> str:
    details = getattr(error, "schema_errors", None) or getattr(getattr(error, "__cause__", None), "schema_errors", None)
    if details:
        return f"{error}: " + "; ".join(str(getattr(e, "message", e))[:200] for e in details[:3])
    cause = error.__cause__
    return f"{type(error).__name__}: {error}" + (f" ({cause})" if cause else "")


# ---------------------------------------------------------------- route handlers: (fake, request, login, caller, *groups)
_ERR_LINE = {"message": "Unprocessable Entity", "errors": ["Line could not be resolved"],
             "documentation_url": f"{DOCS}/pulls/reviews#create-a-review-for-a-pull-request", "status": "422"}


def _repo(fake: FakeGitHub, request: Request, login: str, caller: dict) -> Response:
    owner = fake.user(fake.owner)
    return _json(fake.example.make("full-repository", id=1, name=fake.name, full_name=fake.full_name, owner=owner,
                                   private=False, url=fake.url(""), html_url=f"https://github.invalid/{fake.full_name}",
                                   default_branch="main", fork=False))


def _me(fake: FakeGitHub, request: Request, login: str, caller: dict) -> Response:
    if caller["actions"]:
        return _json({"message": "Resource not accessible by integration", "documentation_url": DOCS,
                      "status": "403"}, 403)
    return _json(fake.example.make("private-user", **fake.user(login), user_view_type="private"))


def _rate(fake: FakeGitHub, request: Request, login: str, caller: dict) -> Response:
    core = {"limit": 5000, "remaining": 4999, "reset": int(time.time()) + 3600, "used": 1}
    return _json(fake.example.make("rate-limit-overview", resources={"core": core, "search": core}, rate=core))


def _pull_json(fake: FakeGitHub, pull: Pull) -> dict[str, Any]:
    def branch(sha: str, full: str, ref: str) -> dict[str, Any]:
        owner, name = full.split("/")
        repo = fake.example.make("repository", id=2 if full != fake.full_name else 1, name=name, full_name=full,
                                 owner=fake.user(owner), fork=full != fake.full_name, private=False)
        return {"label": f"{owner}:{ref}", "ref": ref, "sha": sha, "repo": repo, "user": fake.user(owner)}

    return fake.example.make(
        "pull-request", id=pull.number + 5000, number=pull.number, title=pull.title, state="open", locked=False,
        user=fake.user(pull.author), url=fake.url(f"/pulls/{pull.number}"), draft=False, merged=False,
        html_url=f"https://github.invalid/{fake.full_name}/pull/{pull.number}",
        head=branch(pull.head_sha, pull.head_repo or fake.full_name, "feature"),
        base=branch(pull.base_sha, fake.full_name, "main"), author_association="CONTRIBUTOR")


def _get_pull(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str) -> Response:
    pull = fake.pulls.get(int(number))
    if pull is None:
        return _json({"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404)
    if "vnd.github.diff" in request.headers.get("Accept", ""):
        return Response(pull.diff, status=200, content_type="text/plain; charset=utf-8")
    return _json(_pull_json(fake, pull))


def _files(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str) -> Response:
    pull = fake.pulls[int(number)]
    entries = [fake.example.make("diff-entry", sha=pull.head_sha, filename=path, status="modified", additions=1,
                                 deletions=0, changes=1) for path, _ in sorted(diff_lines(pull.diff))
               if _ == "RIGHT"]
    return fake.paginate(request, entries)


def _pull_comments(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str) -> Response:
    suffix = f"/pulls/{int(number)}"
    items = [_fresh(fake, c) for c in fake.review_comments.values() if c["pull_request_url"].endswith(suffix)]
    return fake.paginate(request, items)


def _repo_comments(fake: FakeGitHub, request: Request, login: str, caller: dict) -> Response:
    since = request.args.get("since", "")
    items = [_fresh(fake, c) for c in fake.review_comments.values() if c["updated_at"] >= since]
    return fake.paginate(request, items)


def _fresh(fake: FakeGitHub, comment: dict[str, Any]) -> dict[str, Any]:
    comment["reactions"] = fake.rollup("pulls", comment["id"], f"/pulls/comments/{comment['id']}/reactions")
    return comment


def _line_ok(fake: FakeGitHub, pull: Pull, item: dict[str, Any]) -> bool:
    valid = diff_lines(pull.diff).get((item.get("path", ""), item.get("side") or "RIGHT"), {})
    line, start = item.get("line"), item.get("start_line")
    if line not in valid or (item["path"], line) in fake.reject_lines:
        return False
    return start is None or (start in valid and valid[start] == valid[line] and start < line)


def _create_review(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str) -> Response:
    pull = fake.pulls[int(number)]
    data = request.get_json()
    comments = data.get("comments") or []
    if data.get("event") == "COMMENT" and not data.get("body") and not comments:
        return _json({**_ERR_LINE, "errors": ["Review body is required"]}, 422)
    if not all(_line_ok(fake, pull, c) for c in comments):
        return _json(_ERR_LINE, 422)
    rid = fake._next_id()
    review = fake.example.make("pull-request-review", id=rid, node_id=f"PRR_{rid}", user=fake.user(login),
                               body=data.get("body", ""), state="COMMENTED", commit_id=data.get("commit_id"),
                               html_url=f"https://github.invalid/{fake.full_name}/pull/{pull.number}#review-{rid}",
                               pull_request_url=fake.url(f"/pulls/{pull.number}"),
                               author_association=fake.associations.get(login, "NONE"), submitted_at=_stamp())
    fake.reviews.append(review)
    for c in comments:
        fake._new_review_comment(pull, login, c, None, rid)
    return _json(review)


def _list_reviews(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str) -> Response:
    suffix = f"/pulls/{int(number)}"
    return fake.paginate(request, [r for r in fake.reviews if r["pull_request_url"].endswith(suffix)])


def _create_comment(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str) -> Response:
    pull = fake.pulls[int(number)]
    data = request.get_json()
    if data.get("subject_type") == "file":
        if data["path"] in fake.reject_files or not any(p == data["path"] for p, _ in diff_lines(pull.diff)):
            error = {"resource": "PullRequestReviewComment", "code": "custom", "field": "path",
                     "message": "pull_request_review_thread.path is invalid"}
            return _json({"message": "Validation Failed", "errors": [error], "documentation_url": DOCS}, 422)
        return _json(fake._new_review_comment(pull, login, {**data, "line": None}, data.get("in_reply_to")), 201)
    if "in_reply_to" not in data and not _line_ok(fake, pull, data):
        error = {"resource": "PullRequestReviewComment", "code": "custom", "field": "pull_request_review_thread.line",
                 "message": "pull_request_review_thread.line must be part of the diff"}
        return _json({"message": "Validation Failed", "errors": [error], "documentation_url": DOCS}, 422)
    return _json(fake._new_review_comment(pull, login, data, data.get("in_reply_to")), 201)


def _reply(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str, cid: str) -> Response:
    parent = fake.review_comments[int(cid)]
    data = {"body": request.get_json()["body"], "path": parent["path"], "line": parent["line"]}
    return _json(fake._new_review_comment(fake.pulls[int(number)], login, data, int(cid)), 201)


def _edit(store: dict[int, dict[str, Any]], fake: FakeGitHub, request: Request, login: str, cid: str) -> Response:
    comment = store.get(int(cid))
    if comment is None:
        return _json({"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404)
    if comment["user"]["login"] != login:
        return _json({"message": "Must have admin rights to Repository.", "documentation_url": DOCS}, 403)
    comment["body"], comment["updated_at"] = request.get_json()["body"], _stamp()
    return _json(comment)


def _delete(store: dict[int, dict[str, Any]], fake: FakeGitHub, request: Request, login: str, cid: str) -> Response:
    comment = store.get(int(cid))
    if comment is None:
        return _json({"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404)
    if comment["user"]["login"] != login:
        return _json({"message": "Must have admin rights to Repository.", "documentation_url": DOCS}, 403)
    del store[int(cid)]
    return Response(status=204)


#: GitHub refuses longer bodies (comments, reviews, summaries) with 422.
MAX_BODY = 65_536


def _too_long(request: Request) -> Response | None:
    """422 as GitHub answers for a body (or a review comment's body) over 65,536 characters."""
    if request.method not in ("POST", "PATCH") or not request.is_json:
        return None
    data = request.get_json(silent=True) or {}
    bodies = [data.get("body") or ""] + [(c or {}).get("body") or "" for c in data.get("comments") or []]
    if max(len(b) for b in bodies) <= MAX_BODY:
        return None
    if request.path.endswith("/reviews"):
        return _json({**_ERR_LINE, "errors": [f"Body is too long (maximum is {MAX_BODY} characters)"]}, 422)
    error = {"resource": "IssueComment" if "/issues/" in request.path else "PullRequestReviewComment",
             "code": "unprocessable", "field": "data",
             "message": f"Body is too long (maximum is {MAX_BODY} characters)"}
    return _json({"message": "Validation Failed", "errors": [error], "documentation_url": DOCS}, 422)


def _reactions(kind: str):
    def handler(fake: FakeGitHub, request: Request, login: str, caller: dict, cid: str) -> Response:
        return fake.paginate(request, list(fake.reactions.get((kind, int(cid)), [])))
    return handler


def _issue_comments(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str) -> Response:
    suffix = f"/issues/{int(number)}"
    return fake.paginate(request, [c for c in fake.issue_comments.values() if c["issue_url"].endswith(suffix)])


def _new_issue_comment(fake: FakeGitHub, request: Request, login: str, caller: dict, number: str) -> Response:
    cid = fake._next_id()
    comment = fake.example.make(
        "issue-comment", id=cid, node_id=f"IC_{cid}", body=request.get_json()["body"], user=fake.user(login),
        url=fake.url(f"/issues/comments/{cid}"), issue_url=fake.url(f"/issues/{int(number)}"),
        html_url=f"https://github.invalid/{fake.full_name}/pull/{int(number)}#issuecomment-{cid}",
        created_at=_stamp(), updated_at=_stamp(), author_association=fake.associations.get(login, "NONE"))
    fake.issue_comments[cid] = comment
    return _json(comment, 201)


def _create_status(fake: FakeGitHub, request: Request, login: str, caller: dict, sha: str) -> Response:
    data = request.get_json()
    status = fake.example.make("status", id=fake._next_id(), state=data["state"], description=data.get("description"),
                               context=data.get("context", "default"), target_url=data.get("target_url"),
                               creator=fake.user(login), url=fake.url(f"/statuses/{sha}"),
                               created_at=_stamp(), updated_at=_stamp())
    fake.statuses.setdefault(sha, []).insert(0, status)
    return _json(status, 201)


def _combined(fake: FakeGitHub, request: Request, login: str, caller: dict, sha: str) -> Response:
    latest: dict[str, dict[str, Any]] = {}
    for s in fake.statuses.get(sha, []):
        latest.setdefault(s["context"], s)
    simple = [{k: s[k] for k in ("id", "node_id", "url", "avatar_url", "state", "description", "target_url",
                                 "context", "created_at", "updated_at")} for s in latest.values()]
    for s in simple:
        s["required"] = False
    states = {s["state"] for s in simple}
    state = "failure" if "failure" in states else "pending" if "pending" in states or not simple else "success"
    repo = fake.example.make("minimal-repository", id=1, name=fake.name, full_name=fake.full_name,
                             owner=fake.user(fake.owner))
    return _json(fake.example.make("combined-commit-status", state=state, statuses=simple, sha=sha,
                                   total_count=len(simple), repository=repo, commit_url=fake.url(f"/commits/{sha}"),
                                   url=fake.url(f"/commits/{sha}/status")))


def _contents(fake: FakeGitHub, request: Request, login: str, caller: dict, path: str) -> Response:
    pull = next((p for p in fake.pulls.values() if p.head_sha == request.args.get("ref")), None)
    data = pull.files.get(path) if pull else None
    if data is None:
        return _json({"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404)
    import base64

    return _json({"type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
                  "path": path, "content": base64.b64encode(data).decode(), "sha": "0" * 40,
                  "url": fake.url(f"/contents/{path}"), "html_url": None, "git_url": None, "download_url": None,
                  "_links": {}})


ROUTES = [
    ("GET", r"{repo}", _repo),
    ("GET", r"/user", _me),
    ("GET", r"/rate_limit", _rate),
    ("GET", r"{repo}/pulls/(\d+)", _get_pull),
    ("GET", r"{repo}/pulls/(\d+)/files", _files),
    ("GET", r"{repo}/pulls/(\d+)/comments", _pull_comments),
    ("POST", r"{repo}/pulls/(\d+)/comments", _create_comment),
    ("POST", r"{repo}/pulls/(\d+)/comments/(\d+)/replies", _reply),
    ("GET", r"{repo}/pulls/comments", _repo_comments),
    ("PATCH", r"{repo}/pulls/comments/(\d+)",
     lambda f, r, login, c, cid: _edit(f.review_comments, f, r, login, cid)),
    ("DELETE", r"{repo}/pulls/comments/(\d+)",
     lambda f, r, login, c, cid: _delete(f.review_comments, f, r, login, cid)),
    ("GET", r"{repo}/pulls/comments/(\d+)/reactions", _reactions("pulls")),
    ("GET", r"{repo}/pulls/(\d+)/reviews", _list_reviews),
    ("POST", r"{repo}/pulls/(\d+)/reviews", _create_review),
    ("GET", r"{repo}/issues/(\d+)/comments", _issue_comments),
    ("POST", r"{repo}/issues/(\d+)/comments", _new_issue_comment),
    ("PATCH", r"{repo}/issues/comments/(\d+)",
     lambda f, r, login, c, cid: _edit(f.issue_comments, f, r, login, cid)),
    ("DELETE", r"{repo}/issues/comments/(\d+)",
     lambda f, r, login, c, cid: _delete(f.issue_comments, f, r, login, cid)),
    ("GET", r"{repo}/issues/comments/(\d+)/reactions", _reactions("issues")),
    ("POST", r"{repo}/statuses/([0-9a-f]+)", _create_status),
    ("GET", r"{repo}/commits/([0-9a-f]+)/status", _combined),
    ("GET", r"{repo}/contents/(.+)", _contents),
    ("GET", r"{repo}/collaborators/([^/]+)/permission", lambda f, r, login, c, user: _permission(f, user)),
]


# ---------------------------------------------------------------- collaborator permissions (who may vote)
#: role → the legacy ``permission`` GitHub reports beside it (maintain counts as write, triage as read)
_BASE_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read",
                    "none": "none"}
_ROLE_OF_ASSOCIATION = {"OWNER": "admin", "MEMBER": "write", "COLLABORATOR": "write"}


def _permission(fake: FakeGitHub, user: str) -> Response:
    """``GET collaborators/{username}/permission``: an explicit role, else one implied by the association
    (owner → admin, member/collaborator → write), else read (anyone may read a public repository)."""
    if {user, "*"} & fake.hidden_permissions:
        return _json({"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404)
    role = fake.roles.get(user) or _ROLE_OF_ASSOCIATION.get(fake.associations.get(user, ""), "read")
    permission = fake.legacy_permissions.get(user, _BASE_PERMISSION[role])
    body = fake.example.make("repository-collaborator-permission", permission=permission, role_name=role,
                             user=fake.example.make("nullable-collaborator", **fake.user(user), role_name=role))
    return _json(body)

