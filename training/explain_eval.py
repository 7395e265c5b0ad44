"""Offline scores of explanations on held-out rules (pure apart from the ROUGE library).

* **overlap** with the vendor's own rationale of the rule: ROUGE-1 F (unigram token F1) and ROUGE-L F, from
  Google's ``rouge-score`` package (Porter stemming on); the reference is the rule's "why" and "what" prose;
* **checks** (:func:`bot.explain.problem`) on the raw sentence, before serving drops anything: how many are empty
  or unfinished, repetitive, contradict the rating, name an identifier the finding does not show — and how many
  pass all and would be shown;
* **consistency**: the sentence contradicts the rating neither in its words (:func:`bot.explain.contradicts`) nor
  when the severity student re-rates the sentence alone as if it were the finding (at most one level apart).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from bot import explain
from training.explain_data import Item


def template(item: Item) -> str:
    """The rule-template baseline: what the tool's metadata alone says ("ruff rates S608 as a security rule")."""
    level = item.origin.split("level: ", 1)[1] if "level: " in item.origin else item.severity
    return f"{item.tool} rates {item.rule} as a {level} rule."


def vendor(item: Item) -> str:
    """The vendor's own first sentence of why the rule matters (what it does, when it says nothing on why)."""
    from training.explain_data import sentences

    first = sentences(item.why) or sentences(item.what)
    return first[0] if first else ""


def pick(items: Sequence[Item], n: int, seed: int = 0) -> list[Item]:
    """One finding per held-out rule (the first in file order), ``n`` rules drawn with ``seed``; rules with no
    rationale are skipped (nothing to score against)."""
    first: dict[str, Item] = {}
    for item in items:
        if item.rationale and item.group not in first:
            first[item.group] = item
    groups = sorted(first)
    random.Random(seed).shuffle(groups)
    return [first[g] for g in groups[:n]]


def overlap(candidates: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1 F and ROUGE-L F of candidates against references (an empty candidate scores 0)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    r1 = rl = 0.0
    for candidate, reference in zip(candidates, references):
        if candidate.strip():
            score = scorer.score(reference, candidate)
            r1 += score["rouge1"].fmeasure
            rl += score["rougeL"].fmeasure
    n = max(1, len(candidates))
    return {"rouge1_f": round(r1 / n, 4), "rougeL_f": round(rl / n, 4)}


#: each failed check (:func:`bot.explain.problem`) under the name the figures use
_FAILURES = (("empty", "empty"), ("too long", "empty"), ("repetitive", "repetitive"),
             ("contradicts", "contradicts"), ("names ", "invented"), ("repeats the finding", "echo"),
             ("says nothing about", "generic"))


def check_rates(texts: Sequence[str], requests: Sequence[explain.Request]) -> dict[str, float]:
    """Share of raw generations that fail each check (the first failed one counts), and the share shown."""
    counts = dict.fromkeys(["empty", "repetitive", "contradicts", "invented", "echo", "generic", "shown"], 0)
    for text, request in zip(texts, requests):
        sentence = explain.complete(text)
        reason = explain.problem(sentence, request) if sentence else "empty"
        key = next((name for start, name in _FAILURES if reason.startswith(start)), "shown") if reason else "shown"
        counts[key] += 1
    n = max(1, len(texts))
    return {key: round(value / n, 4) for key, value in counts.items()}


def grounding(texts: Sequence[str], requests: Sequence[explain.Request]) -> dict[str, float]:
    """Over non-empty sentences: share naming no invented identifier, share not repetitive."""
    sentences = [(explain.complete(t), r) for t, r in zip(texts, requests)]
    said = [(s, r) for s, r in sentences if s]
    n = max(1, len(said))
    return {"n": len(said), "grounded": round(sum(not explain.invented(s, r.evidence()) for s, r in said) / n, 4),
            "repetitive": round(sum(explain.repetitive(s) for s, _ in said) / n, 4)}


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def copying(texts: Sequence[str], requests: Sequence[explain.Request]) -> dict[str, float]:
    """Over non-empty sentences of findings shown their rule's rationale (prompt v2): ``verbatim``, the share
    whose words are nine-tenths covered by four-word runs of that rationale (a copy, perhaps with a lead), and
    ``binds``, the share that use a name or content word of the finding itself (its text or code) which the
    rationale does not (the sentence is about *this* finding, not the rule). Overlap with the vendor's prose says
    little where the prose was in the prompt; these say what was done with it."""
    said = [(explain.complete(t), r) for t, r in zip(texts, requests) if r.rationale]
    said = [(s, r) for s, r in said if s]
    verbatim = binds = 0
    for sentence, request in said:
        words, rule = _words(sentence), _words(request.rationale)
        grams = {tuple(rule[i:i + 4]) for i in range(len(rule) - 3)}
        covered = set()
        for i in range(len(words) - 3):
            if tuple(words[i:i + 4]) in grams:
                covered.update(range(i, i + 4))
        verbatim += len(covered) >= 0.9 * len(words)
        own = (set(_words(request.review)) | set(_words(explain.code_tail(request.code)))) - set(rule)
        binds += bool({w for w in _words(sentence) if len(w) >= 3} & own)
    n = max(1, len(said))
    return {"n": len(said), "verbatim": round(verbatim / n, 4), "binds": round(binds / n, 4)}


def rerater(rater) -> Callable[[list[tuple[str, str, str]]], list[str]]:
    """(code, text, origin) triples → the severity ``rater`` gives each: how the severity student re-rates a
    sentence as if it were the finding."""

    def rerate(triples: list[tuple[str, str, str]]) -> list[str]:
        return [rating.severity for rating in rater.rate_texts(triples)] if triples else []

    return rerate


def verdicts(sentences: Sequence[str], requests: Sequence[explain.Request],
             rerate: Callable[[list[tuple[str, str, str]]], list[str]] | None = None) -> list[dict]:
    """Per sentence, whether it is consistent with its request's rating: ``contradicts`` (its words contradict
    the rating, :func:`bot.explain.contradicts`); with ``rerate``, ``rerated`` (the severity the student gives the
    sentence alone, with the finding's code and no origin), ``within_one`` (at most one level from the rating)
    and ``consistent`` (within one and no contradicting words). The one definition of consistency: the
    benchmark's figures and the teacher's filter both use it."""
    out = [{"contradicts": explain.contradicts(s, r.severity)} for s, r in zip(sentences, requests)]
    if rerate and out:
        again = rerate([(r.code, s, "") for s, r in zip(sentences, requests)])
        for verdict, severity, request in zip(out, again, requests):
            near = explain.reads_as(severity, request.severity)
            verdict.update(rerated=severity, within_one=near, consistent=near and not verdict["contradicts"])
    return out


def served(texts: Sequence[str], requests: Sequence[explain.Request],
           rerate: Callable[[list[tuple[str, str, str]]], list[str]] | None = None) -> list[str]:
    """What serving shows of each raw generation: the sentence when it passes the checks
    (:func:`bot.explain.accept`) and, with ``rerate``, when the severity student reads it alone within one level
    of the rating (the rater's own re-reading, ``LlamaCppRater._reread``); "" otherwise."""
    shown = [explain.accept(t, r) for t, r in zip(texts, requests)]
    return explain.reread(shown, list(requests), rerate) if rerate else shown


def consistency(texts: Sequence[str], requests: Sequence[explain.Request],
                rerate: Callable[[list[tuple[str, str, str]]], list[str]] | None = None) -> dict[str, float]:
    """Over non-empty sentences: share whose words do not contradict the rating; with ``rerate`` (code, text,
    origin → severity), the share the student re-rates at most one level from the rating, exactly, and both."""
    said = [(explain.complete(t), r) for t, r in zip(texts, requests)]
    said = [(s, r) for s, r in said if s]
    n = max(1, len(said))
    found = verdicts([s for s, _ in said], [r for _, r in said], rerate)
    out = {"n": len(said), "no_contradiction": round(sum(not v["contradicts"] for v in found) / n, 4)}
    if rerate and said:
        out["rerated_within_one"] = round(sum(v["within_one"] for v in found) / n, 4)
        out["rerated_exact"] = round(sum(v["rerated"] == r.severity for v, (_, r) in zip(found, said)) / n, 4)
        out["consistent"] = round(sum(v["consistent"] for v in found) / n, 4)
    return out


def ceiling(items: Sequence, rerate: Callable[[list[tuple[str, str, str]]], list[str]]) -> dict[str, float]:
    """How consistent (:func:`verdicts`) a sentence *taken from the vendor's own prose* can be on these findings
    (``training.explain_data.Item``): over all findings, the share for which at least one sentence of that prose
    passes, as written or as the teacher words it (led by the finding's subject, :func:`ranked`) — the prose the
    explainer is shown (its ``Rule:`` line), or all of the vendor's prose for a finding shown none; and over the
    findings the teacher has a sentence for, the share whose teacher's first sentence passes and whose best
    passes. An explainer that only chooses among the vendor's sentences, however well,
    scores at most ``any_vendor_sentence``."""
    from training.explain_data import ranked

    pools, firsts, anys, taught = 0, 0, 0, 0
    for item in items:
        request = item.request()
        prose = explain.sentences(request.rationale) if request.rationale else (
            explain.sentences(item.why) + explain.sentences(item.what))
        options = ranked(item)
        found = verdicts(prose + options, [request] * (len(prose) + len(options)), rerate)
        ok = [v["consistent"] for v in found]
        pools += any(ok)
        if options:
            taught += 1
            firsts += ok[len(prose)]
            anys += any(ok[len(prose):])
    n = max(1, len(items))
    return {"n": len(items), "any_vendor_sentence": round(pools / n, 4), "with_teacher_sentence": taught,
            "teacher_first": round(firsts / max(1, taught), 4), "any_teacher_sentence": round(anys / max(1, taught), 4)}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
