"""GitLab references, diff reassembly and discussion positions (pure; no python-gitlab here).

GitLab wants both old and new line numbers for context lines, ``line_code`` on some instances, and a
``line_range`` for multi-line comments; everything that computes those from the diff lives here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConfigError
from bot.hosts.base import MergeRequest, MergeRequestRef
from bot.plan import PlannedComment

#: GitLab's longest note body, in characters (its host entry's max_body).
MAX_BODY = 1_000_000
_REF_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+)\s*!\s*(\d+)\s*$")


def parse_gitlab_ref(text: str) -> MergeRequestRef:
    """``group/sub/project!45`` → MergeRequestRef. Also accepts a merge request's web URL."""
    match = _REF_RE.match(text or "")
    if not match:
        url = re.match(r"^https?://[^/]+/(.+?)/-/merge_requests/(\d+)", (text or "").strip())
        if url:
            return MergeRequestRef("gitlab", url.group(1), int(url.group(2)))
        raise ConfigError(f"not a GitLab merge request reference: {text!r}",
                          hint="write it as group/project!45 (subgroups allowed) or paste the MR's URL")
    return MergeRequestRef("gitlab", match.group(1), int(match.group(2)))


def ref_from_ci_env(environ: Mapping[str, str]) -> MergeRequestRef:
    """The merge request of a GitLab CI merge-request pipeline (CI_MERGE_REQUEST_IID + project id or path)."""
    iid = environ.get("CI_MERGE_REQUEST_IID", "")
    project = environ.get("CI_PROJECT_ID") or environ.get("CI_PROJECT_PATH") or ""
    if not iid.isdigit() or not project:
        raise ConfigError("not inside a GitLab merge request pipeline (CI_MERGE_REQUEST_IID / CI_PROJECT_ID unset)",
                          hint="run the job with `rules: - if: $CI_PIPELINE_SOURCE == \"merge_request_event\"` "
                               "or pass --gitlab group/project!IID")
    return MergeRequestRef("gitlab", project, int(iid))


def url_from_ci_env(environ: Mapping[str, str], default: str = "https://gitlab.com") -> str:
    """The instance URL inside GitLab CI: CI_API_V4_URL without ``/api/v4``, else CI_SERVER_URL, else default."""
    api = (environ.get("CI_API_V4_URL") or "").rstrip("/")
    if api:
        return api.removesuffix("/api/v4")
    return (environ.get("CI_SERVER_URL") or default).rstrip("/")


# --- diff reassembly and line maps -------------------------------------------------------------------------

def assemble_diff(entries: list[dict[str, Any]]) -> bytes:
    """GitLab's per-file diff entries → one git-style unified diff (what ``git diff`` would print)."""
    out: list[str] = []
    for e in entries:
        old, new = e.get("old_path") or e.get("new_path"), e.get("new_path") or e.get("old_path")
        out.append(f"diff --git a/{old} b/{new}")
        if e.get("new_file"):
            out.append(f"new file mode {e.get('b_mode') or '100644'}")
        elif e.get("deleted_file"):
            out.append(f"deleted file mode {e.get('a_mode') or '100644'}")
        elif e.get("a_mode") and e.get("b_mode") and e["a_mode"] != e["b_mode"]:
            out += [f"old mode {e['a_mode']}", f"new mode {e['b_mode']}"]
        if e.get("renamed_file") and old != new:
            out += [f"rename from {old}", f"rename to {new}"]
        text = e.get("diff") or ""
        if text:
            out.append("--- /dev/null" if e.get("new_file") else f"--- a/{old}")
            out.append("+++ /dev/null" if e.get("deleted_file") else f"+++ b/{new}")
            out.append(text if text.endswith("\n") else text + "\n")
        elif e.get("too_large") or e.get("collapsed") or not (e.get("renamed_file") or e.get("a_mode") != e.get("b_mode")):
            out.append(f"Binary files a/{old} and b/{new} differ")
    joined = "\n".join(part.rstrip("\n") if i < len(out) - 1 else part for i, part in enumerate(out))
    return (joined if joined.endswith("\n") or not joined else joined + "\n").encode("utf-8", "surrogateescape")


@dataclass
class _FileLines:
    """For one file: diff line kind per (old, new) position, as GitLab's line_code needs both numbers."""

    old_path: str
    new_path: str
    by_new: dict[int, tuple[str, int]] = field(default_factory=dict)  # new line → (kind, old counter)
    by_old: dict[int, tuple[str, int]] = field(default_factory=dict)  # old line → (kind, new counter)


def line_maps(diff: bytes) -> dict[str, _FileLines]:
    """Walk a unified diff and note, for every line, its kind and both line counters (keyed by new path)."""
    files: dict[str, _FileLines] = {}
    current: _FileLines | None = None
    old_no = new_no = 0
    old_path = ""
    for raw in diff.decode("utf-8", "replace").split("\n"):
        if raw.startswith("diff --git "):
            current = None
        elif raw.startswith("--- "):
            old_path = raw[4:].removeprefix("a/")
        elif raw.startswith("+++ "):
            new_path = raw[4:].removeprefix("b/")
            new_path = old_path if new_path == "/dev/null" else new_path
            current = files.setdefault(new_path, _FileLines(old_path if old_path != "/dev/null" else new_path,
                                                             new_path))
        elif raw.startswith("@@") and current is not None:
            m = re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", raw)
            if m:
                old_no, new_no = int(m.group(1)), int(m.group(2))
        elif current is not None and raw[:1] in ("+", "-", " "):
            kind = raw[:1]
            if kind == "+":
                current.by_new[new_no] = ("+", old_no)
                new_no += 1
            elif kind == "-":
                current.by_old[old_no] = ("-", new_no)
                old_no += 1
            else:
                current.by_new[new_no] = (" ", old_no)
                current.by_old[old_no] = (" ", new_no)
                old_no, new_no = old_no + 1, new_no + 1
    return files


def line_code(path: str, old: int, new: int) -> str:
    """GitLab's line code: sha1 of the file path, then the old and new line counters."""
    return f"{hashlib.sha1(path.encode()).hexdigest()}_{old}_{new}"


def _point(f: _FileLines, side: str, line: int) -> dict[str, Any] | None:
    """old_line / new_line / line_code / type for one line of the diff, or None when it is not in the diff."""
    if side == "LEFT":
        hit = f.by_old.get(line)
        if not hit:
            return None
        kind, new = hit
        point = {"old_line": line, "new_line": None if kind == "-" else new, "type": "old" if kind == "-" else None}
        point["line_code"] = line_code(f.new_path, line, new)
        return point
    hit = f.by_new.get(line)
    if not hit:
        return None
    kind, old = hit
    point = {"new_line": line, "old_line": None if kind == "+" else old, "type": "new" if kind == "+" else None}
    point["line_code"] = line_code(f.new_path, old, line)
    return point


def build_position(comment: PlannedComment, mr: MergeRequest, files: dict[str, _FileLines],
                   with_line_code: bool) -> dict[str, Any] | None:
    """A full text position for a finding (multi-line via line_range), or None when its line is not in the diff."""
    anchor = comment.finding.anchor
    f = files.get(anchor.path)
    end = _point(f, anchor.side, anchor.line) if f else None
    if f is None or end is None:
        return None
    position: dict[str, Any] = {"position_type": "text", "base_sha": mr.base_sha, "start_sha": mr.start_sha,
                                "head_sha": mr.head_sha, "old_path": f.old_path, "new_path": f.new_path}
    for key in ("old_line", "new_line"):
        if end[key] is not None:
            position[key] = end[key]
    if with_line_code:
        position["line_code"] = end["line_code"]
    start = _point(f, anchor.side, anchor.start_line) if anchor.start_line and anchor.start_line < anchor.line else None
    if start is not None:
        position["line_range"] = {"start": start, "end": end}
    return position


def file_position(comment: PlannedComment, mr: MergeRequest, files: dict[str, _FileLines]) -> dict[str, Any] | None:
    anchor = comment.finding.anchor
    f = files.get(anchor.path)
    if f is None:
        return None
    return {"position_type": "file", "base_sha": mr.base_sha, "start_sha": mr.start_sha, "head_sha": mr.head_sha,
            "old_path": f.old_path, "new_path": f.new_path}
