"""The hidden marker each Sieve comment carries, and finding fingerprints.

A marker is an HTML comment (invisible on GitHub and GitLab) holding a compact, base64-encoded JSON payload:
fingerprint, severity, probabilities, model id, prompt version, commit, and the code excerpt plus review text
the student read — enough to rebuild the training example later from the comment alone, with no local state.
Base64 keeps ``--`` and ``>`` (which would end the HTML comment) out of the payload.

Only the *footer* counts: the marker (or the summary marker) that ends a comment, after any trailing whitespace.
Sieve appends it last to every comment it writes, and untrusted text inside a comment is rendered inert (see
bot.render), so a marker planted in a review text, a file name or anywhere but the end is never read — and
whether a comment is Sieve's at all is decided by its author (bot.comments), never by its text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from dataclasses import asdict, dataclass, field

from bot.findings import Finding

MARKER_VERSION = 1
SUMMARY_MARKER = "<!-- sieve:summary -->"
_MARKER_RE = re.compile(r"<!-- sieve:v(\d+) ([A-Za-z0-9+/=_\-]+) -->")
#: Code kept in a marker. GitHub allows 65 536 characters per comment; the payload is compressed.
MAX_MARKER_CODE = 4000


@dataclass(frozen=True)
class Marker:
    fingerprint: str
    severity: str
    probabilities: dict[str, float]
    model: str
    prompt_version: str
    commit: str
    path: str
    line: int
    review: str
    code: str
    source: str
    rule_id: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def encode(marker: Marker) -> str:
    """Marker → ``<!-- sieve:v1 … -->``."""
    payload = asdict(marker)
    payload["code"] = payload["code"][-MAX_MARKER_CODE:]
    payload["probabilities"] = {k: round(v, 4) for k, v in marker.probabilities.items()}
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    data = base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode()
    return f"<!-- sieve:v{MARKER_VERSION} {data} -->"


def decode(body: str | None) -> Marker | None:
    """Read the marker that ends a comment body; None when absent, not last, or unreadable (never raises)."""
    if not body:
        return None
    match = _footer(body)
    if not match or int(match.group(1)) != MARKER_VERSION:
        return None
    try:
        payload = json.loads(zlib.decompress(base64.urlsafe_b64decode(match.group(2))))
        known = {k: payload[k] for k in Marker.__dataclass_fields__ if k in payload}
        return Marker(**known)
    except (ValueError, TypeError, zlib.error, KeyError):
        return None


def is_summary(body: str | None) -> bool:
    """Does the body end with the summary marker?"""
    return bool(body) and body.rstrip().endswith(SUMMARY_MARKER)


def without_footer(body: str) -> str:
    """The body with its ending marker removed (for quoting a comment inside another one)."""
    match = _footer(body)
    return body[: match.start()].rstrip() if match else body


def _footer(body: str) -> re.Match[str] | None:
    """The marker that ends ``body`` (trailing whitespace aside), if the body ends with one."""
    start = body.rfind("<!-- sieve:v")
    return _MARKER_RE.fullmatch(body.rstrip(), start) if start >= 0 else None


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def anchored_text(finding: Finding) -> str:
    """The content of the commented line(s), taken from the end of the finding's code excerpt."""
    lines = [ln for ln in finding.code.split("\n") if not ln.startswith("@@")]
    span = 1 + (finding.anchor.line - finding.anchor.start_line if finding.anchor.start_line else 0)
    return "\n".join(ln[1:] if ln[:1] in "+- " else ln for ln in lines[-max(1, span):])


def fingerprint_base(finding: Finding) -> str:
    """Identity of a finding that survives pushes which only shift lines: no line numbers in it."""
    key = "\x1f".join([finding.anchor.path, finding.anchor.side, finding.source, finding.rule_id or "",
                       _normalise(finding.review), _normalise(anchored_text(finding))])
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]


def fingerprints(findings: list[Finding]) -> list[str]:
    """One fingerprint per finding; identical findings on identical lines get an occurrence suffix."""
    seen: dict[str, int] = {}
    out = []
    order = sorted(range(len(findings)), key=lambda i: (findings[i].anchor.path, findings[i].anchor.line))
    result: dict[int, str] = {}
    for index in order:
        base = fingerprint_base(findings[index])
        count = seen.get(base, 0)
        seen[base] = count + 1
        result[index] = base if count == 0 else f"{base}-{count}"
    for index in range(len(findings)):
        out.append(result[index])
    return out
