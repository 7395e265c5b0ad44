"""Team-preference benchmark: after one round of reactions, does the next review post what each team wants?

    .venv/bin/python -m benchmarks.team [--small] [--teams pytest,litestar] [--cap 25] [--json]

Simulated teams come from real projects' ruff settings (``benchmarks/teams/*.json``, see benchmarks/team_data.py);
the code pool is real code from installed packages (``team_data.POOL``). ruff runs every stable rule over the
pool; each finding is labelled per team (wanted / unwanted by name / no opinion) and rated once by the real
default student (``bot.app.make_rater`` with the default configuration; ratings are cached in ``--cache``). At
most ``--cap`` findings per rule are kept in each half, so that a few very common rules do not make the figures.

Files are split in halves. In the *reaction* half, two trusted maintainers react only to what Sieve posted
(P(≥ minor) ≥ 0.5), to at most 5 comments per rule: 👍 wanted, 👎 unwanted, nothing on no-opinion findings;
10% of reactions are flipped (honest mistakes) and a third of 👎 carry ``/sieve severity trivial``. The reactions
go through ``sieve feedback import`` into a real feedback store, and the *held-out* half is reviewed again with
the team's memory (bot.memory). Reported per team, before feedback and in the next review, separately for rules
that got reactions and rules that did not: unwanted findings posted, wanted findings posted (and those whose rule
got a 👍), security findings posted; and the poisoning check — one compromised trusted account 👎-ing and
correcting to trivial 50 posted findings (security findings and the team's most posted wanted rules): security
findings moved below major and rules silenced by it.

``--retrain`` adds the retrain arm (benchmarks/team_retrain.py; opt-in, minutes per team on CPU): one training round
per team on its exported feedback, from the default student, and the held-out half again with memory off ("after
retrain") and on ("after both"), with ``--preference unlikelihood|kto|dpo``. ``--export FILE`` writes each team's
reactions as import rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import team_data
from bot import memory
from bot.config import Config
from bot.findings import Anchor, Finding, Rating
from bot.plan import PlanConfig, passes
from bot.severity import Severity
from training.lexical import UPDATE_L2

MAINTAINERS = ("maintainer-1", "maintainer-2")
PER_RULE = 5  # comments reacted to per rule
CONFIG = PlanConfig(threshold=Severity.MINOR, mode="mass", mass_cutoff=0.5)


@dataclass(frozen=True)
class Item:
    finding: Finding
    half: str
    rating: Rating

    @property
    def rule(self) -> str:
        return self.finding.rule_id or ""

    @property
    def posted(self) -> bool:
        return passes(self.rating, CONFIG)[0]


def _key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def findings(site: Path, files: list[str], cap: int) -> list[tuple[Finding, str]]:
    """ruff's findings on the pool as Sieve's ruff reviewer words them, at most ``cap`` per rule and half."""
    from bot.reviewers.origin import ruff_level
    from bot.reviewers.ruff import find_ruff

    exe = find_ruff()
    by_group: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for d in team_data.run_ruff(site, files, exe):
        path = Path(d["filename"]).resolve().relative_to(site).as_posix()
        code = d["code"]
        f = Finding(Anchor(path, int(d["location"]["row"])), f"{code} {d['message'].strip()}", "ruff", code="",
                    rule_id=code, level=ruff_level(code, exe))
        by_group[(code, team_data.half(path))].append(f)
    out = []
    for (code, side), group in sorted(by_group.items()):
        group.sort(key=lambda f: _key(f.anchor.path, f.anchor.line, f.review))
        out.extend((f, side) for f in group[:cap])
    return out


class RatingCache:
    """Ratings by the student's whole input (origin + review; the default student reads no code), in a JSON file."""

    def __init__(self, path: Path, model_id: str, by_path: bool = False) -> None:
        self.path, self.model_id, self.by_path = path, model_id, by_path
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.data: dict[str, dict[str, float]] = data.get(model_id, {})

    def key(self, f: Finding) -> str:
        """A rating's key; with ``by_path`` (a prior that reads folders) the finding's path is part of it."""
        return _key(f.origin(), f.review, f.anchor.path) if self.by_path else _key(f.origin(), f.review)

    def rate(self, rater, wanted: list[Finding], log=print) -> list[Rating]:
        todo = list({self.key(f): f for f in wanted if self.key(f) not in self.data}.values())
        started = time.perf_counter()
        for start in range(0, len(todo), 64):
            chunk = todo[start:start + 64]
            for f, r in zip(chunk, rater.rate(chunk)):
                self.data[self.key(f)] = r.probabilities
            self._save()
            log(f"rated {start + len(chunk)}/{len(todo)} new findings ({time.perf_counter() - started:.0f} s)")
        out = []
        for f in wanted:
            probs = self.data[self.key(f)]
            out.append(Rating(dict(probs), max(probs, key=lambda k: (probs[k], k)), self.model_id, ""))
        return out

    def _save(self) -> None:
        whole = json.loads(self.path.read_text()) if self.path.is_file() else {}
        whole[self.model_id] = self.data
        self.path.write_text(json.dumps(whole))


def reactions(team: team_data.Team, items: list[Item], seed: int, noise: float) -> list[dict]:
    """The maintainers' reactions on the reaction half, as ``sieve feedback import`` rows."""
    rng = random.Random(f"{seed}:{team.name}")
    by_rule: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if it.half == "react" and it.posted and team.label(it.rule, it.finding.anchor.path) != "none":
            by_rule[it.rule].append(it)
    rows = []
    for rule in sorted(by_rule):
        chosen = sorted(by_rule[rule], key=lambda it: _key(team.name, it.finding.anchor.path, it.finding.anchor.line))
        # two findings with the same text on the same line are one comment (and one comment in the store): a
        # maintainer reacts to it once
        first: dict[tuple[str, int, str], Item] = {}
        for it in chosen:
            first.setdefault((it.finding.anchor.path, it.finding.anchor.line, it.finding.review), it)
        chosen = list(first.values())
        for it in chosen[:PER_RULE]:
            wanted = team.label(rule, it.finding.anchor.path) == "wanted"
            for user in MAINTAINERS:
                vote = 1 if wanted else -1
                vote = -vote if rng.random() < noise else vote
                correction = "trivial" if vote < 0 and rng.random() < 1 / 3 else None
                rows.append(_row(team, it, user, vote, correction))
    return rows


def _row_of(repo: str, it: Item) -> dict:
    f = it.finding
    return {"repo": repo, "path": f.anchor.path, "line": f.anchor.line, "tool": "ruff", "rule": it.rule,
            "review": f.review, "severity": it.rating.severity, **({"level": f.level} if f.level else {})}


def _row(team: team_data.Team, it: Item, user: str, vote: int, correction: str | None) -> dict:
    return {**_row_of(f"teams/{team.name}", it), "reaction": "+1" if vote > 0 else "-1", "correction": correction,
            "user": user, "trusted": True}


def attack(team: team_data.Team, items: list[Item]) -> list[dict]:
    """One compromised trusted account: 👎 and a correction to trivial on 50 posted findings of the reaction half,
    security findings first, then the team's most posted wanted rules."""
    posted = [it for it in items if it.half == "react" and it.posted]
    security = [it for it in posted if memory.is_security(it.finding)]
    counts = Counter(it.rule for it in posted if team.label(it.rule, it.finding.anchor.path) == "wanted")
    popular = sorted((it for it in posted if it.rule in counts and not memory.is_security(it.finding)),
                     key=lambda it: (-counts[it.rule], _key(it.finding.anchor.path, it.finding.anchor.line)))
    targets = (security[:25] + popular)[:50]
    return [_row(team, it, "compromised", -1, "trivial") for it in targets]


def remember(rows: list[dict], repo: str, folder: Path, shown: list[Item] = ()) -> memory.Memory:
    """Rows → a real store through the import path (and ``shown``, Sieve's other comments, as a harvest keeps them
    without reactions) → the memory a review of ``repo`` would load."""
    from bot.feedback_import import comment_of
    from bot.memory_app import _learn, import_file
    from bot.store import open_store

    path = folder / f"{_key(repo, len(rows), len(shown))[:12]}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = open_store(folder / f"{path.stem}.db")
    try:
        written, bad = import_file(store, str(path))
        assert not bad and written == len(rows), bad
        reacted = {comment_of(r).comment_id for r in rows}
        for it in shown:  # a harvest keeps every Sieve comment; these got no reaction
            info = comment_of(_row_of(repo, it))
            if info.comment_id not in reacted:
                store.sync(info, [], "simulated")
        return _learn(store, replace(Config(), threshold=CONFIG.threshold), repo)
    finally:
        store.close()


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def measure(team: team_data.Team, items: list[Item], after: list[Rating], reacted: set[str], upped: set[str]) -> dict:
    """Held-out counts before feedback and in the next review, for reacted and unreacted rules."""
    rows: dict[str, Counter] = defaultdict(Counter)
    for it, new in zip(items, after):
        label = team.label(it.rule, it.finding.anchor.path)
        now = passes(new, CONFIG)[0]
        groups = [label, f"{label}:{'reacted' if it.rule in reacted else 'unreacted'}"]
        if label == "wanted" and it.rule in upped:
            groups.append("wanted:upvoted")
        if memory.is_security(it.finding):
            groups.append("security")
        for g in groups:
            rows[g]["n"] += 1
            rows[g]["before"] += it.posted
            rows[g]["after"] += now
        if memory.is_security(it.finding) and _major(it.rating) and not _major(new):
            rows["security"]["below_major"] += 1
    return {g: {**c, "before_share": _share(c["before"], c["n"]), "after_share": _share(c["after"], c["n"])}
            for g, c in sorted(rows.items())}


def _major(r: Rating) -> bool:
    return r.severity in ("critical", "major")


def poisoning(team: team_data.Team, items: list[Item], folder: Path) -> dict:
    """What one compromised account's 50 reactions do on their own: security below major, rules silenced."""
    rows = attack(team, items)
    mem = remember(rows, f"teams/{team.name}", folder)
    after = memory.adjust([it.finding for it in items], [it.rating for it in items], mem)
    moved = sum(memory.is_security(it.finding) and _major(it.rating) and not _major(a) for it, a in zip(items, after))
    targeted = {r["rule"] for r in rows}
    silenced = set()
    for rule in targeted:
        held = [(it, a) for it, a in zip(items, after) if it.rule == rule and it.half == "heldout" and it.posted]
        if held and not any(passes(a, CONFIG)[0] for _, a in held):
            silenced.add(rule)
    return {"reactions": len(rows), "security_below_major": moved, "rules_silenced": sorted(silenced),
            "exact_findings_moved": sum(a.memory_note is not None and a.memory_note.moved for a in after)}


def run_team(team: team_data.Team, items: list[Item], args, folder: Path) -> dict:
    rows = reactions(team, items, args.seed, args.noise)
    mem = remember(rows, f"teams/{team.name}", folder, [it for it in items if it.half == "react" and it.posted])
    held = [it for it in items if it.half == "heldout"]
    started = time.perf_counter()
    after = memory.adjust([it.finding for it in held], [it.rating for it in held], mem)
    seconds = time.perf_counter() - started
    reacted = {r["rule"] for r in rows}
    upped = {r["rule"] for r in rows if r["reaction"] == "+1"}
    if args.export:
        with open(args.export, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in rows)
    return {"team": team.name, "version": team.version, "licence": team.licence, "reactions": len(rows),
            "rules_reacted": len(reacted), "entries_applied": sum(e.active for e in mem.entries),
            "memory_ms_per_finding": round(1000 * seconds / max(1, len(held)), 4),
            "heldout": measure(team, held, after, reacted, upped), "misses": misses(team, held, after),
            "poisoning": poisoning(team, items, folder)}


def misses(team: team_data.Team, items: list[Item], after: list[Rating]) -> dict:
    """Where memory went against the team on the held-out half: wanted findings it stopped posting, by the entry
    that moved them, and unwanted findings still posted after it, by rule and by the entry that applied (or "none")
    — so a missed goal names its cause."""
    lost: Counter = Counter()
    kept: Counter = Counter()
    for it, new in zip(items, after):
        label = team.label(it.rule, it.finding.anchor.path)
        now = passes(new, CONFIG)[0]
        scope = new.memory_note.scope if new.memory_note is not None else "none"
        if label == "wanted" and it.posted and not now:
            lost[f"{it.rule} {it.finding.anchor.path} <- {scope}"] += 1
        elif label == "unwanted" and now:
            kept[f"{it.rule} <- {scope}"] += 1
    return {"wanted_lost": dict(lost.most_common()), "unwanted_still_posted": dict(kept.most_common())}


def goals(result: dict) -> dict:
    """The issue's next-review goals for one team, each True / False (None: nothing to measure)."""
    h = result["heldout"]

    def get(group: str, key: str):
        return h.get(group, {}).get(key)

    unwanted = get("unwanted", "after_share")
    upvoted = get("wanted:upvoted", "after_share")
    return {"unwanted_posted_le_5pct": None if unwanted is None else unwanted <= 0.05,
            "upvoted_wanted_posted_ge_90pct": None if upvoted is None else upvoted >= 0.90,
            "wanted_posted_not_fall": (get("wanted", "after") or 0) >= (get("wanted", "before") or 0),
            "security_below_major_by_one_account_0": result["poisoning"]["security_below_major"] == 0,
            "rules_silenced_by_one_account_0": not result["poisoning"]["rules_silenced"]}


def run(args) -> dict:
    from bot.app import make_rater
    from bot.config import Config

    started = time.perf_counter()
    teams = team_data.load_teams(args.teams.split(",") if args.teams else None)
    site = team_data.site_packages()
    files = team_data.pool_files(site, per_package=args.files_per_package)
    pairs = findings(site, files, args.cap)
    rater = make_rater(Config())
    cache = RatingCache(Path(args.cache), rater.model_id)
    ratings = cache.rate(rater, [f for f, _ in pairs], log=lambda m: print(m, file=sys.stderr))
    items = [Item(f, side, r) for (f, side), r in zip(pairs, ratings)]
    with tempfile.TemporaryDirectory(prefix="sieve-team-") as tmp:
        results = [run_team(t, items, args, Path(tmp)) for t in teams]
        retrained = []
        if args.retrain:
            from benchmarks.team_retrain import retrain_team

            retrained = [retrain_team(t, items, args, Path(tmp)) for t in teams]
    for r in results:
        r["goals"] = goals(r)
    return {"retrain": retrained, "model": rater.model_id, "pool": list(team_data.POOL), "files": len(files), "findings": len(items),
            "rules": len({it.rule for it in items}), "cap_per_rule_and_half": args.cap,
            "seconds": round(time.perf_counter() - started, 1), "teams": results}


def to_text(result: dict) -> str:
    lines = [(f"{result['findings']} findings of {result['rules']} rules in {result['files']} files "
              f"(at most {result['cap_per_rule_and_half']} per rule and half), model {result['model']}"),
             "held-out half: posted before feedback → in the next review with memory (posted / findings)"]
    for t in result["teams"]:
        h = t["heldout"]
        lines.append(f"\n{t['team']} {t['version']} ({t['licence']}): {t['reactions']} reactions on "
                     f"{t['rules_reacted']} rules, {t['entries_applied']} memory entries applied")
        for group in ("unwanted", "unwanted:reacted", "unwanted:unreacted", "wanted", "wanted:reacted",
                      "wanted:unreacted", "wanted:upvoted", "security"):
            c = h.get(group)
            if c:
                lines.append(f"  {group:<20} {c['before']:>5} → {c['after']:>5} of {c['n']:>5}  "
                             f"({c['before_share']:.1%} → {c['after_share']:.1%})")
        p = t["poisoning"]
        lines.append(f"  one account, {p['reactions']} reactions: security below major {p['security_below_major']}, "
                     f"rules silenced {len(p['rules_silenced'])}, exact findings moved {p['exact_findings_moved']}")
        for kind, label in (("wanted_lost", "wanted no longer posted"), ("unwanted_still_posted", "unwanted still posted")):
            shown = list(t.get("misses", {}).get(kind, {}).items())
            if shown:
                lines.append(f"  {label}: " + "; ".join(f"{k} ×{n}" for k, n in shown[:8])
                             + (f"; … {len(shown) - 8} more" if len(shown) > 8 else ""))
        lines.append("  goals: " + ", ".join(f"{k} {'met' if v else 'n/a' if v is None else 'MISSED'}"
                                            for k, v in t["goals"].items()))
    if result.get("retrain"):
        from benchmarks.team_retrain import to_text as retrain_text

        lines.append("\n" + retrain_text(result["retrain"]))
    lines.append(f"\n{result['seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.heldout import finish

    parser = argparse.ArgumentParser(prog="python -m benchmarks.team", description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a few files per package (CI; about two minutes)")
    parser.add_argument("--teams", help="comma-separated team names (default: every file in benchmarks/teams)")
    parser.add_argument("--cap", type=int, default=None, help="findings kept per rule and half (default 25; small 6)")
    parser.add_argument("--noise", type=float, default=0.10, help="share of reactions flipped")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "sieve-team-ratings.json"),
                        help="ratings cache (JSON), reused by later runs")
    parser.add_argument("--export", help="also append every team's reactions (import rows) to this JSONL file")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON")
    retrain = parser.add_argument_group("retrain arm (opt-in; minutes per team)")
    retrain.add_argument("--retrain", action="store_true", help="one training round per team on its feedback")
    retrain.add_argument("--preference", choices=("unlikelihood", "kto", "dpo"), default="unlikelihood",
                         help="how the feedback rows train (training.preference)")
    retrain.add_argument("--beta", type=float, default=1.0, help="β of the KTO / DPO terms")
    retrain.add_argument("--steps", type=int, default=24, help="optimizer steps of the round (8 items each)")
    retrain.add_argument("--lr", type=float, default=2e-4, help="peak learning rate of the round")
    retrain.add_argument("--prior-l2", type=float, default=UPDATE_L2,
                         help="L2 pull of the updated lexical prior toward the default's (training.lexical)")
    retrain.add_argument("--path-prior", action="store_true",
                         help="the updated prior also learns the reactions' folders (training.lexical.update_prior)")
    retrain.add_argument("--balance", action="store_true",
                         help="weight up the feedback rows asking for a lower level (training.curriculum.balance_feedback)")
    retrain.add_argument("--decompose", action="store_true",
                         help="also rate the round's adapter with the default's prior, and the default's adapter with "
                              "the round's prior (which half moved the posting)")
    retrain.add_argument("--replay", type=int, default=192, help="items of the default's training plan mixed in")
    retrain.add_argument("--runs", default=str(Path(tempfile.gettempdir()) / "sieve-team-retrain"),
                         help="folder for each round's data, adapter and ratings (reused by reruns)")
    args = parser.parse_args(argv)
    args.files_per_package = 4 if args.small else None
    args.cap = args.cap if args.cap is not None else (6 if args.small else 25)
    return finish(run, to_text, args)


if __name__ == "__main__":
    sys.exit(main())
