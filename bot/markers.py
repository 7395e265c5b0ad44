"""The hidden marker each Sieve comment carries, and finding fingerprints.

A marker is an HTML comment (invisible on GitHub and GitLab) holding a compact, base64-encoded JSON payload:
fingerprint, severity, probabilities, model id, prompt version, commit, and the code excerpt plus review text
the student read — enough to rebuild the training example later from the comment alone, with no local state.
Base64 keeps ``--`` and ``>`` (which would end the HTML comment) out of the payload. A marker is *bounded*: the
review is kept up to ``MAX_MARKER_REVIEW`` characters (the student reads at most 600) with the sha256 of the
whole text, and the code up to ``MAX_MARKER_CODE``, so a 1 MB review text still makes a comment the host takes.

Every comment Sieve writes is *sealed* just before it is sent (:func:`seal`): the footer gets an HMAC over the
repository, the kind of comment, the whole text above the footer and the payload. Under an identity other
workflows share (``github-actions[bot]``) that is what tells Sieve's comments from theirs; see bot.comments.

Only the *footer* counts: the marker (or the summary marker) that ends a comment, after any trailing whitespace.
Sieve appends it last to every comment it writes, and untrusted text inside a comment is rendered inert (see
bot.render), so a marker planted in a review text, a file name or anywhere but the end is never read — and
whether a comment is Sieve's at all is decided by its author (bot.comments), never by its text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import zlib
from dataclasses import asdict, dataclass, field

from bot.findings import Finding

MARKER_VERSION = 2
LEGACY_VERSIONS = (1,)  # read (unsealed) only where the author alone proves the comment is Sieve's
#: What planning and rendering put at the end of a summary; :func:`seal` replaces it with the sealed form.
SUMMARY_MARKER = "<!-- sieve:summary -->"
_MARKER_RE = re.compile(r"<!-- sieve:v(\d+) ([A-Za-z0-9+/=_\-]+)(?: ([0-9a-f]{32}))? -->")
_SUMMARY_RE = re.compile(r"<!-- sieve:summary(?: ([A-Za-z0-9+/=_\-]+) ([0-9a-f]{32}))? -->")
#: Code kept in a marker. GitHub allows 65 536 characters per comment; the payload is compressed.
MAX_MARKER_CODE = 4000
#: Review text kept in a marker (the student reads at most 600 characters; the sha256 covers the whole text).
MAX_MARKER_REVIEW = 2000


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
    level: str | None = None  # the tool's own level (SARIF level, ruff category): the origin the student read
    extra: dict[str, object] = field(default_factory=dict)
    review_sha: str = ""  # sha256 of the whole review (the marker keeps its first MAX_MARKER_REVIEW characters)


@dataclass(frozen=True)
class SummaryData:
    """What a sealed summary remembers: the head it describes, and the comments the host refused to place
    (fingerprint → sha256 of the refused body), so that the same body is not sent again on the next run."""

    commit: str = ""
    refused: dict[str, str] = field(default_factory=dict)


def review_sha(review: str) -> str:
    return hashlib.sha256(review.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def body_sha(body: str) -> str:
    """Identity of a comment's text, footer aside (the same body refused twice is recognised)."""
    return hashlib.sha256(without_footer(body).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _pack(payload: dict[str, object]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode()


def _unpack(data: str) -> dict[str, object]:
    payload = json.loads(zlib.decompress(base64.urlsafe_b64decode(data)))
    if not isinstance(payload, dict):
        raise ValueError("not an object")
    return payload


def encode(marker: Marker) -> str:
    """Marker → ``<!-- sieve:v2 … -->`` (unsealed: a host seals it when it writes the comment)."""
    payload = asdict(marker)
    payload["code"] = payload["code"][-MAX_MARKER_CODE:]
    payload["review"] = payload["review"][:MAX_MARKER_REVIEW]
    payload["review_sha"] = marker.review_sha or review_sha(marker.review)
    payload["probabilities"] = {k: round(v, 4) for k, v in marker.probabilities.items()}
    return f"<!-- sieve:v{MARKER_VERSION} {_pack(payload)} -->"


def decode(body: str | None) -> Marker | None:
    """Read the marker that ends a comment body; None when absent, not last, or unreadable (never raises).
    Whether the comment is Sieve's at all is not decided here (see bot.comments)."""
    if not body:
        return None
    match = _footer(body)
    if not match or int(match.group(1)) not in (MARKER_VERSION, *LEGACY_VERSIONS):
        return None
    try:
        payload = _unpack(match.group(2))
        known = {k: payload[k] for k in Marker.__dataclass_fields__ if k in payload}
        marker = Marker(**known)
    except (ValueError, TypeError, zlib.error, KeyError):
        return None
    if not isinstance(marker.fingerprint, str) or not isinstance(marker.review, str):
        return None
    return marker


def is_summary(body: str | None) -> bool:
    """Does the body end with a summary marker (sealed or not)?"""
    return _summary_footer(body or "") is not None


def summary_data(body: str | None) -> SummaryData:
    """What a sealed summary remembers (empty for an unsealed or unreadable one; never raises)."""
    match = _summary_footer(body or "")
    if not match or not match.group(1):
        return SummaryData()
    try:
        payload = _unpack(match.group(1))
        refused = payload.get("refused") or {}
        if not isinstance(refused, dict):
            refused = {}
        return SummaryData(commit=str(payload.get("commit") or ""),
                           refused={str(k): str(v) for k, v in refused.items()})
    except (ValueError, TypeError, zlib.error):
        return SummaryData()


def footer_version(body: str) -> int | None:
    """The version of the finding marker that ends ``body`` (None: no finding marker there)."""
    match = _footer(body)
    return int(match.group(1)) if match else None


def without_footer(body: str) -> str:
    """The body with its ending marker (a finding's or a summary's) removed."""
    match = _footer(body) or _summary_footer(body)
    return body[: match.start()].rstrip() if match else body


def _footer(body: str) -> re.Match[str] | None:
    """The marker that ends ``body`` (trailing whitespace aside), if the body ends with one."""
    start = body.rfind("<!-- sieve:v")
    return _MARKER_RE.fullmatch(body.rstrip(), start) if start >= 0 else None


def _summary_footer(body: str) -> re.Match[str] | None:
    start = body.rfind("<!-- sieve:summary")
    return _SUMMARY_RE.fullmatch(body.rstrip(), start) if start >= 0 else None


# ---------------------------------------------------------------------------------------------- sealing
@dataclass(frozen=True)
class Seal:
    """The key and scope a host seals and checks its comments with.

    ``key`` is the per-repository secret (``SIEVE_MARKER_KEY``); without one the HMAC is keyed with the scope
    alone, which still binds the seal to the whole text of the comment (a marker copied into another text does
    not verify) but can be recomputed by anyone who knows that text — under a shared identity set a key.
    ``scope`` names the host kind. The repository is not part of it: the key is the repository's own secret, and
    a repository's name changes (renames; GitLab jobs name a project by id or by path) must not unseal Sieve's
    comments."""

    scope: str
    key: bytes = b""

    def _mac(self, kind: str, head: str, data: str) -> str:
        message = "\x1f".join((self.scope.lower(), kind, head, data)).encode("utf-8", "surrogatepass")
        return hmac.new(self.key or b"sieve-unkeyed", message, hashlib.sha256).hexdigest()[:32]

    def seal(self, body: str, summary: SummaryData | None = None) -> str:
        """The body with its footer sealed (a summary footer also gets ``summary``'s data). A body with no
        footer is returned unchanged."""
        match = _footer(body)
        if match:
            head = body[: match.start()].rstrip()
            data = match.group(2)
            return f"{body[: match.start()]}<!-- sieve:v{match.group(1)} {data} {self._mac('finding', head, data)} -->"
        match = _summary_footer(body)
        if match:
            head = body[: match.start()].rstrip()
            state = summary or summary_data(body)
            data = _pack({"commit": state.commit, "refused": dict(sorted(state.refused.items()))})
            return f"{body[: match.start()]}<!-- sieve:summary {data} {self._mac('summary', head, data)} -->"
        return body

    def verify(self, body: str) -> bool:
        """Was this body sealed with this key and scope, and not changed since?"""
        for kind, match, data_group, sig_group in (("finding", _footer(body), 2, 3),
                                                   ("summary", _summary_footer(body), 1, 2)):
            if match and match.group(sig_group):
                head = body[: match.start()].rstrip()
                expected = self._mac(kind, head, match.group(data_group))
                return hmac.compare_digest(expected, match.group(sig_group))
        return False


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
