"""``sieve feedback collect | export | stats``: the host → pure records → store wiring, and the two reports."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import feedback
from bot.hosts.base import Host
from bot.severity import LABELS
from bot.store import Store


@dataclass
class CollectStats:
    comments: int = 0  # Sieve's own comments found (its identity, its marker)
    new_votes: int = 0
    changed_votes: int = 0
    removed_votes: int = 0
    untrusted: int = 0  # records from users below the trust bar (kept, marked)
    unknown: int = 0  # records from users whose permission the host did not answer clearly (kept, not trusted)
    corrections: int = 0
    api_calls: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the user should know: unknown permissions, and why

    def __str__(self) -> str:
        unknown = f", {self.unknown} with permission unknown" if self.unknown else ""
        return (f"collected {self.comments} Sieve comment(s): {self.new_votes} new vote(s), {self.changed_votes} "
                f"changed, {self.removed_votes} removed, {self.corrections} correction(s), {self.untrusted} "
                f"untrusted record(s){unknown}; {self.api_calls} API call(s) in {self.seconds:.1f} s")


def collect(host: Host, repo: str, since: str | None, store: Store) -> CollectStats:
    """Read every Sieve comment's reactions and replies from the host and sync them into the store.

    Each comment is synced in its own transaction: if the store fails (a full disk), the comments synced before
    stay, and the StoreError says what happened."""
    started = time.perf_counter()
    calls_before = host.counters.api_calls
    stats = CollectStats()
    unclear: dict[str, list[str]] = {}  # why a permission was unclear → the logins it was unclear for
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for item in host.feedback(repo, since):
        info = feedback.comment_from(item)  # None unless Sieve's own identity wrote it
        if info is None:
            continue
        records = feedback.records_from(item, item.comment.author)
        counts = store.sync(info, records, now)
        stats.comments += 1
        stats.new_votes += counts.new
        stats.changed_votes += counts.changed
        stats.removed_votes += counts.removed
        stats.untrusted += sum(not r.trusted and not r.unknown for r in records)
        stats.unknown += sum(r.unknown for r in records)
        stats.corrections += sum(r.correction is not None for r in records)
        for person in (*item.votes, *item.replies):
            if person.trust_unknown and person.user not in unclear.setdefault(person.trust_unknown, []):
                unclear[person.trust_unknown].append(person.user)
    stats.notes = [unknown_note(host.name, why, logins) for why, logins in unclear.items()]
    stats.api_calls = host.counters.api_calls - calls_before
    stats.seconds = time.perf_counter() - started
    return stats


def unknown_note(host: str, why: str, logins: list[str], shown: int = 5) -> str:
    """One line naming the voters whose trust is unknown, the host's answer, and what to do."""
    names = ", ".join(sorted(logins)[:shown]) + (", …" if len(logins) > shown else "")
    where = f"[{host}] trusted_users"
    return (f"permission unknown for {len(logins)} voter(s) ({names}): {why} — their feedback is kept but not "
            f"trusted; check that the token may read the repository's collaborators and members, or list the "
            f"voters' numeric ids in {where} (docs/feedback.md)")


@dataclass(frozen=True)
class LeftOut:
    """Feedback that did not count because its users are not trusted (for the reading commands' reports)."""

    untrusted: int = 0  # votes and corrections from users below the trust bar
    unknown: int = 0  # votes and corrections from users whose permission the host did not answer clearly

    def __bool__(self) -> bool:
        return bool(self.untrusted or self.unknown)

    def __str__(self) -> str:
        return (f"left out as not trusted: {self.untrusted} vote(s) or correction(s) from users without write "
                f"access and {self.unknown} from users whose permission is unknown (see `sieve feedback collect`'s "
                f"notes; --include-untrusted exports them, marked untrusted)")


def export(store: Store, out_path: str | Path, *, trusted_only: bool = True) -> int:
    """Write one training example per comment whose feedback gives a label; returns how many."""
    votes, corrections = store.votes(), store.corrections()
    lines = []
    for info in store.comments():
        key = (info.host, info.repo, info.comment_id)
        verdict = feedback.verdict(info, votes.get(key, []), corrections.get(key, []), trusted_only=trusted_only)
        if verdict is not None:
            lines.append(json.dumps(feedback.example(info, verdict), ensure_ascii=False))
    Path(out_path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def left_out(store: Store, *, unlabelled_only: bool = False) -> LeftOut:
    """The votes and corrections that did not count for lack of trust. ``unlabelled_only``: only those on
    comments that gave no trusted label (what made an export shorter than the feedback suggests)."""
    counts = store.not_trusted()
    if unlabelled_only:
        votes, corrections = store.votes(), store.corrections()
        labelled = {(i.host, i.repo, i.comment_id) for i in store.comments()
                    if feedback.verdict(i, votes.get((i.host, i.repo, i.comment_id), []),
                                        corrections.get((i.host, i.repo, i.comment_id), [])) is not None}
        counts = {key: value for key, value in counts.items() if key not in labelled}
    return LeftOut(sum(u for u, _ in counts.values()), sum(k for _, k in counts.values()))


def stats(store: Store) -> list[dict[str, Any]]:
    """Per model version and predicted level: posted, trusted 👍/👎, 👍-rate (the precision maintainers saw)."""
    votes, corrections = store.votes(), store.corrections()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for info in store.comments():
        row = rows.setdefault((info.model, info.predicted), {
            "model": info.model, "severity": info.predicted, "posted": 0, "voted": 0, "up": 0, "down": 0,
            "corrected": 0, "up_rate": None})
        row["posted"] += 1
        key = (info.host, info.repo, info.comment_id)
        net = sum(v for v, trusted in votes.get(key, []) if trusted)
        if any(trusted for _, trusted in votes.get(key, [])):
            row["voted"] += 1
            row["up"] += net > 0
            row["down"] += net < 0
        row["corrected"] += any(t and level != info.predicted for level, t, _ in corrections.get(key, []))
    for row in rows.values():
        decided = row["up"] + row["down"]
        row["up_rate"] = round(row["up"] / decided, 3) if decided else None
    order = {label: i for i, label in enumerate(LABELS)}
    return sorted(rows.values(), key=lambda r: (r["model"], order.get(r["severity"], 9)))
