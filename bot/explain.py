"""Why a finding got its severity, in one sentence: the explanation prompt and the checks a sentence must pass.

Pure: no model, no I/O. The explanation prompt lives here and nowhere else and carries its own version, so the
explainer adapter is always served with the prompt it was trained on (``training.explain_data`` and
``training.explain_train`` import it; :mod:`bot.explainer` runs it).

Why a separate prompt from the severity task (``bot.prompt``): rating reads four label scores from one forward
pass, explanation is free generation. The explainer is a second LoRA adapter on the student's base, so the
rating adapter and its measured figures stay exactly as they were, and the explanation prompt can be short
(every token of it is decoded once per posted finding).

Why checks at all: a 270M model that writes a wrong reason does more harm than one that writes none. A
generated sentence is kept only if it is a sentence (letters, at least a few words, finished), is not
repetitive, does not contradict the rating (a "security" reason on a trivial rating, a "style" reason on a
critical one), and names no identifier that appears nowhere in the finding, its origin or its code. What fails
is dropped and the comment carries no explanation: saying nothing beats saying something wrong.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.severity import LABELS

EXPLAIN_PROMPT_VERSION = "sieve-explain-v3"

#: Shared by every finding (evaluated once per batch).
INSTRUCTION = ("Say in one sentence why this code review finding has its severity, naming the concrete risk "
               "in this code.\n")
#: Where the sentence begins; the model writes it and ends the line.
ANSWER = "\nWhy:"
MAX_REVIEW_CHARS = 300
MAX_CODE_CHARS = 120
#: The rule's own rationale shown to the explainer (whole sentences that fit; ≈55 tokens).
MAX_RULE_CHARS = 260
#: Hard cap on generated tokens per finding (a 30-word sentence is ≈40 tokens).
MAX_TOKENS = 48
MAX_WORDS = 34
MIN_WORDS = 4


@dataclass(frozen=True)
class Request:
    """One finding as the explainer reads it, with the severity it was rated."""

    review: str
    severity: str
    code: str = ""
    origin: str = ""
    #: the rule's documented rationale (:func:`rule_text`: ruff's catalogue, a SARIF rule's help); "" for a
    #: finding with no rule (an LLM's), whose sentence the explainer writes from the finding alone
    rationale: str = ""

    def evidence(self) -> str:
        """All the text the finding offers: what an explanation may name (the rule's documentation included:
        a name the vendor's prose uses is the rule's, not made up)."""
        return f"{self.review}\n{self.code}\n{self.origin}\n{self.rationale}"


def _field(text: str, limit: int) -> str:
    """Untrusted text on one line (every run of whitespace, newlines included, becomes one space; other control
    characters are dropped), capped: nothing in a review can start a ``Severity:`` or ``Why:`` line of its own."""
    flat = " ".join("".join(ch for ch in str(text) if ch.isprintable() or ch.isspace()).split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat


def code_tail(code: str, limit: int = MAX_CODE_CHARS) -> str:
    """The commented line and what fits before it: a finding's excerpt ends at the line it is about. Diff
    markers (``+``, ``-``, space) and hunk headers are removed; lines are joined with `` ⏎ ``."""
    lines = []
    for line in str(code or "").replace("\r", "\n").split("\n"):
        if line.startswith(("@@", "\\ No newline", "+++", "---")):
            continue
        if line[:1] in ("+", "-", " "):
            line = line[1:]
        if line.strip():
            lines.append(line.strip())
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if kept and size + len(line) + 3 > limit:
            break
        kept.insert(0, line[-limit:])
        size += len(line) + 3
    return " ⏎ ".join(kept)


def render_body(request: Request) -> str:
    """The per-finding part of the prompt (after :data:`INSTRUCTION`), ending where the sentence begins.

    Prompt v3: a finding whose rule documents its rationale shows the finding and that rationale only — the
    explainer copies a sentence of the rule and leads it with the finding's own words; the tool line and code
    excerpt v2 showed besides cost 40% of the prompt's tokens (every one evaluated per posted finding), and
    sentences written without them use words of the finding's own no less often (docs/explanations.md: 3% of
    them, against 2% with them). A finding without a rule (an LLM's) still shows its tool and code: there they
    are all the explainer has."""
    severity = request.severity if request.severity in LABELS else "minor"
    lines = [f"Finding: {_field(request.review, MAX_REVIEW_CHARS)}"]
    if request.rationale:
        lines.append(f"Rule: {_field(request.rationale, MAX_RULE_CHARS)}")
    else:
        if request.origin:
            lines.append(f"Tool: {_field(request.origin, 80)}")
        code = code_tail(request.code)
        if code:
            lines.append(f"Code: {_field(code, MAX_CODE_CHARS)}")
    lines.append(f"Severity: {severity}")
    return "\n".join(lines) + ANSWER


_SPLIT = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<=[.!?])\s+(?=[A-Z`\"'(])")


def sentences(text: str) -> list[str]:
    """Sentences of vendor prose (abbreviations such as "e.g." do not end one)."""
    return [s.strip() for s in _SPLIT.split(" ".join(str(text or "").split())) if s.strip()]


def markdown_section(markdown: str, heading: str) -> str:
    """The prose under ``## heading`` of a rule's documentation (ruff's catalogue), code blocks and link targets
    removed, on one line; "" when there is no such section."""
    match = re.search(rf"^##\s*{re.escape(heading)}\s*$(.*?)(?=^##\s|\Z)", markdown or "", re.MULTILINE | re.DOTALL)
    if not match:
        return ""
    text = re.sub(r"```.*?```", " ", match.group(1), flags=re.DOTALL)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]+)\](?!\()", r"\1", text)  # reference-style links: [PEP 8]
    return " ".join(text.split())


def rule_text(why: str, what: str = "", limit: int = MAX_RULE_CHARS) -> str:
    """The rationale the explainer reads for a rule: the vendor's "why it is bad" sentences, then "what it does",
    whole sentences while they fit in ``limit`` characters (the first one cut with "…" if it alone does not)."""
    kept: list[str] = []
    size = 0
    for sentence in sentences(why) + sentences(what):
        if kept and size + 1 + len(sentence) > limit:
            break
        if not kept and len(sentence) > limit:
            return sentence[: limit - 1].rstrip() + "…"
        kept.append(sentence)
        size += len(sentence) + (1 if size else 0)
    return " ".join(kept)


def render(request: Request) -> str:
    """The whole prompt for one finding."""
    return INSTRUCTION + render_body(request)


def target_text(sentence: str) -> str:
    """What the model is trained to write after :data:`ANSWER`: a space, the sentence, the end of the line."""
    return " " + " ".join(sentence.split()) + "\n"


# ----------------------------------------------------------------------------- checks

#: Words that claim a security hole or a crash; a trivial rating with such a reason contradicts itself.
_SEVERE = re.compile(r"\b(secur\w*|vulnerab\w*|inject\w*|attacker\w*|exploit\w*|arbitrary code|remote code|"
                     r"crash\w*|panic\w*|abort\w*|segfault\w*|undefined behaviou?r|overflow\w*|leak\w* secret\w*|"
                     r"privilege\w*)", re.IGNORECASE)
#: Words that say the finding is about looks; a critical rating whose whole reason is this contradicts itself.
_COSMETIC = re.compile(r"\b(styl\w*|cosmetic\w*|formatting|whitespace|readab\w*|naming convention\w*|"
                       r"consisten\w*|idiomatic\w*|shorter|simpler|more concise|purely)\b", re.IGNORECASE)
#: Tokens that look like code: backtick spans, snake_case, camelCase / PascalCase, dotted or :: paths, calls.
_CODE_SPAN = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|::)[A-Za-z_][A-Za-z0-9_]*)*")
_KNOWN = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)


def _looks_like_code(name: str) -> bool:
    core = name.strip("_")
    if "." in name or "::" in name or "_" in core:
        return True
    return bool(re.search(r"[a-z][A-Z]", core)) or bool(re.fullmatch(r"[A-Z][a-z]+[A-Z]\w*", core))


def identifiers(sentence: str) -> list[str]:
    """The code names a sentence mentions: every name inside backticks, and outside them every word shaped like
    code (``order_id``, ``isFinite``, ``KeyboardInterrupt``, ``os.path``). Plain words are not names."""
    found: list[str] = []
    for span in _CODE_SPAN.findall(sentence):
        found += [n for n in _NAME.findall(span) if len(n) > 1 or span.strip() == n]
    rest = _CODE_SPAN.sub(" ", sentence)
    found += [n for n in _NAME.findall(rest) if _looks_like_code(n)]
    return list(dict.fromkeys(found))


def invented(sentence: str, evidence: str) -> list[str]:
    """Names in ``sentence`` that appear nowhere in ``evidence`` (case-insensitive), other than the language's
    own builtins and keywords (``None``, ``KeyboardInterrupt``): the identifiers a model made up."""
    haystack = evidence.lower()
    out = []
    for name in identifiers(sentence):
        parts = re.split(r"\.|::", name)
        if name in _KNOWN or all(p in _KNOWN for p in parts):
            continue
        if name.lower() in haystack or all(p.lower() in haystack for p in parts if p):
            continue
        out.append(name)
    return out


def repetitive(sentence: str) -> bool:
    """True when a sentence loops: a word three times in a row, a repeated three-word run, or fewer than half
    of its words distinct (the "1st, but not the 1st, but not the …" failure)."""
    words = re.findall(r"\w+", sentence.lower())
    if len(words) < 3:
        return False
    if any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)):
        return True
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    if len(set(grams)) < len(grams):
        return True
    return len(words) >= 8 and len(set(words)) < 0.5 * len(words)


def contradicts(sentence: str, severity: str) -> bool:
    """True when the stated reason contradicts the rating: a trivial rating explained by a security hole or a
    crash, or a critical rating explained by style alone."""
    severe = bool(_SEVERE.search(sentence))
    if severity == "trivial":
        return severe
    if severity == "critical":
        return bool(_COSMETIC.search(sentence)) and not severe
    return False


def reads_as(rerated: str, severity: str) -> bool:
    """True when a sentence the severity student re-rated as ``rerated`` is consistent with the rating
    ``severity``: at most one level apart (the serving check and the benchmark's consistency share this rule)."""
    if rerated not in LABELS or severity not in LABELS:
        return False
    return abs(LABELS.index(rerated) - LABELS.index(severity)) <= 1


def reread(sentences: list[str], requests: list[Request], rerate) -> list[str]:
    """``sentences`` with "" wherever the severity student, reading the sentence alone as if it were the finding
    (``rerate``: (code, text, origin) triples → severities, one batch), rates it more than one level from the
    finding's rating (:func:`reads_as`): a sentence that reads as another severity contradicts the rating it is
    meant to explain. Empty sentences are not rated."""
    said = [i for i, sentence in enumerate(sentences) if sentence]
    out = list(sentences)
    if said:
        again = rerate([(requests[i].code, sentences[i], "") for i in said])
        for i, severity in zip(said, again):
            if not reads_as(severity, requests[i].severity):
                out[i] = ""
    return out


def complete(text: str) -> str:
    """The first sentence of generated text, or "" when there is none to keep (no letters, cut off mid-way)."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    match = re.search(r"[.!?][\"'”’)\]]*(?=\s|$)", line)  # a quotation may close after the full stop
    if not match:
        return ""
    return line[: match.end()].strip()


def problem(sentence: str, request: Request) -> str:
    """Why ``sentence`` must not be shown for ``request`` ("" when it may): the checks of the module docstring."""
    words = re.findall(r"[A-Za-z]+", sentence)
    if len(sentence.split()) < MIN_WORDS or len(words) < MIN_WORDS:
        return "empty"
    if len(sentence.split()) > MAX_WORDS:
        return "too long"
    if repetitive(sentence):
        return "repetitive"
    if contradicts(sentence, request.severity):
        return "contradicts the rating"
    made_up = invented(sentence, request.evidence())
    if made_up:
        return f"names {made_up[0]!r}, which is not in the finding"
    if len(_new_words(sentence, request.review)) < 2:
        return "repeats the finding"
    if not _about(sentence, request.evidence()):
        return "says nothing about this finding"
    return ""


def accept(text: str, request: Request) -> str:
    """The sentence to show for generated ``text``, or "" when it fails a check."""
    sentence = complete(text)
    return sentence if sentence and not problem(sentence, request) else ""


_FILLER = frozenset(["a", "an", "the", "is", "are", "be", "this", "that", "it", "its", "of", "to", "in", "on", "for", "with", "and", "or", "but", "not", "no", "so", "as", "by"])


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _content(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[a-z][a-z0-9_]+", text.lower()) if len(w) >= 4} - _FILLER


def _about(sentence: str, evidence: str) -> bool:
    """True when the sentence shares a content word (four letters or more) or a name with the finding: "This is
    likely to cause confusion." could be said of anything, so it says nothing about this one."""
    return bool(_content(sentence) & _content(evidence))


def _new_words(sentence: str, review: str) -> set[str]:
    """Words of ``sentence`` that the review does not already say (fillers and plural ``s`` aside): a sentence
    with fewer than two of them only restates the finding ("`os` imported but unused.")."""
    said = {_stem(w) for w in re.findall(r"\w+", review.lower())}
    return {_stem(w) for w in re.findall(r"\w+", sentence.lower())} - said - _FILLER


def requests_for(findings: Iterable, ratings: Iterable) -> list[Request]:
    """One request per (Finding, Rating) pair."""
    return [Request(review=f.review, severity=r.severity, code=f.code, origin=f.origin(),
                    rationale=getattr(f, "rationale", "") or "")
            for f, r in zip(findings, ratings)]
