"""A lexical prior beside the student: TF-IDF over the review text + a linear classifier, in plain Python.

Why: on the severity data the wording of a review carries most of the signal, and a bag of word and
character n-grams generalises to unseen analyser rules ("... is insecure", "Add a type hint ...") better
than a 270M model fine-tuned on a thousand items. The two make different mistakes, so the served rating
is their weighted product of experts::

    log P(label) = (1 - w) · log P_student(label) + w · log P_lexical(label) + const

with ``w`` chosen on the model's held-out exam when the model is built (``training.lexical``), and recorded
in its manifest next to the file. The prior is fitted on the same training items as the adapter.

The file is JSON written by ``training.lexical.export_prior`` from a fitted scikit-learn pipeline; reading
and scoring here needs no scikit-learn, and reproduces its ``predict_proba`` (tokenisation, sublinear tf,
idf, l2 norm per feature block, multinomial logistic regression) to float rounding.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ModelError
from bot.rater.base import distribution
from bot.severity import LABELS

FORMAT = "sieve-lexical-1"
#: which findings a prior reads (a manifest's ``lexical.scope``; absent: "all"). "tools": only findings with an
#: analyser origin — a free-text review from a project the prior never saw is where it costs (docs/model.md)
LEXICAL_SCOPES = ("all", "tools")
#: Longest review text the prior reads (longer text only adds cost; the student reads at most 600 characters).
MAX_CHARS = 4000
#: What to do about a bad prior file or manifest entry (one wording for both checks).
REFIT_HINT = ("re-write it with `python -m training.recipe --out MODEL_DIR --recalibrate` or remove `lexical` "
              "from the manifest")


@dataclass(frozen=True)
class _Block:
    """One TF-IDF feature block (word or char_wb n-grams) and its slice of the classifier's weights."""

    analyzer: str
    ngram_range: tuple[int, int]
    lowercase: bool
    token_pattern: re.Pattern[str] | None
    sublinear_tf: bool
    terms: dict[str, tuple[float, tuple[float, ...]]]  # term -> (idf, one weight per class)

    def analyze(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        low, high = self.ngram_range
        if self.analyzer == "word":
            tokens = self.token_pattern.findall(text) if self.token_pattern else text.split()
            grams = list(tokens) if low == 1 else []
            for n in range(max(low, 2), min(high, len(tokens)) + 1):
                grams.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
            return grams
        grams = []
        for word in text.split():  # scikit-learn squeezes whitespace runs first; split() does the same
            padded = f" {word} "
            for n in range(low, high + 1):
                grams.extend(padded[i:i + n] for i in range(max(1, len(padded) - n + 1)))
                if len(padded) <= n:  # a word shorter than n counts once, as itself
                    break
        return grams

    def features(self, text: str, path: str = "", origin: str = "") -> dict[str, float]:
        """One finding's tf-idf features in this block's vocabulary, l2-normalised (empty when it has none): a
        text block reads the review text, a folder block (:data:`PATH_ANALYZER`) the finding's path and its
        rule's letters (:func:`path_terms`)."""
        grams = path_terms(path, origin) if self.analyzer == PATH_ANALYZER else self.analyze(text)
        counts = Counter(g for g in grams if g in self.terms)
        weights = {g: (1.0 + math.log(c) if self.sublinear_tf else float(c)) * self.terms[g][0]
                   for g, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in weights.values()))
        return {g: v / norm for g, v in weights.items()} if norm else {}

    def logits(self, text: str, classes: int, path: str = "", origin: str = "") -> list[float]:
        """This block's contribution to each class's logit for one finding (:meth:`features`)."""
        out = [0.0] * classes
        for g, value in self.features(text, path, origin).items():
            coef = self.terms[g][1]
            for k in range(classes):
                out[k] += value * coef[k]
        return out


class LexicalPrior:
    """Label probabilities from the review text alone; see the module docstring."""

    def __init__(self, classes: list[str], intercept: list[float], blocks: list[_Block]) -> None:
        self.classes = classes
        self.intercept = intercept
        self.blocks = blocks

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> LexicalPrior:
        """Read a prior written by ``training.lexical.export_prior``; a clear ModelError when it is not one.

        ``sha256`` (the manifest's) is checked against the very bytes parsed here. Every number must be finite:
        a NaN weight would otherwise rate everything alike.
        """
        path = Path(path)
        hint = REFIT_HINT
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"lexical prior {path} is missing", hint=hint) from None
        except OSError as exc:
            raise ModelError(f"cannot read lexical prior {path}: {exc.strerror}", hint=hint) from None
        actual = hashlib.sha256(raw).hexdigest()
        if sha256 and actual != sha256:
            raise ModelError(f"lexical prior {path} has sha256 {actual[:12]}…, the manifest says {sha256[:12]}…",
                             hint="the file was changed or only partly copied; restore it or " + hint)
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_not_finite)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read lexical prior {path}: {exc}", hint=hint) from None
        except ValueError as exc:
            raise ModelError(f"lexical prior {path} is malformed: {exc}", hint=hint) from None
        return cls.from_data(data, str(path))

    @property
    def reads_paths(self) -> bool:
        """Whether this prior has a folder block (a team's feedback gave it one) and so reads findings' paths."""
        return any(block.analyzer == PATH_ANALYZER for block in self.blocks)

    @classmethod
    def from_data(cls, data, where: str = "the prior") -> LexicalPrior:
        """A prior from its parsed JSON (what :meth:`load` reads); a clear ModelError when it is not one."""
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, not {FORMAT!r}")
            classes = [str(c) for c in data["classes"]]
            if sorted(classes) != sorted(LABELS):
                raise ValueError(f"classes {classes} are not the four severity labels")
            intercept = [_number(v) for v in data["intercept"]]
            blocks = []
            for raw in data["blocks"]:
                if raw["analyzer"] not in ("word", "char_wb", PATH_ANALYZER):
                    raise ValueError(f"unknown analyzer {raw['analyzer']!r}")
                terms = {str(t): (_number(v[0]), tuple(_number(x) for x in v[1:])) for t, v in raw["terms"].items()}
                if any(len(w) != len(classes) for _, w in terms.values()) or len(intercept) != len(classes):
                    raise ValueError("a weight row does not have one value per class")
                low, high = (int(n) for n in raw["ngram_range"])
                pattern = raw.get("token_pattern")
                blocks.append(_Block(analyzer=raw["analyzer"], ngram_range=(low, high),
                                     lowercase=bool(raw.get("lowercase", True)),
                                     token_pattern=re.compile(pattern) if pattern else None,
                                     sublinear_tf=bool(raw.get("sublinear_tf", False)), terms=terms))
        except (KeyError, TypeError, ValueError, IndexError, re.error, AttributeError) as exc:
            raise ModelError(f"lexical prior {where} is malformed: {exc}", hint=REFIT_HINT) from None
        return cls(classes, intercept, blocks)

    def probabilities(self, text: str, path: str = "", origin: str = "") -> dict[str, float]:
        """P(label | review text), one value per severity label. A prior with a ``path`` block (one a team's
        feedback updated, :func:`path_terms`) also reads the finding's folder and its rule's letters; a prior
        without one ignores both."""
        text = text[:MAX_CHARS]
        logits = list(self.intercept)
        for block in self.blocks:
            for k, value in enumerate(block.logits(text, len(self.classes), path, origin)):
                logits[k] += value
        return distribution(dict(zip(self.classes, logits, strict=True)))


#: the analyzer name of a prior's folder block: terms from the finding's path, not its text (path_terms)
PATH_ANALYZER = "path"
_LETTERS = re.compile(r"\b([A-Z]{1,8})\d{2,5}\b")


def path_terms(path: str, origin: str = "") -> list[str]:
    """What a prior's folder block reads of a finding: its rule's letter prefix (ruff's ``S`` of ``S101``, ``D`` of
    ``D401``) in each folder of its path (``S|dir:tests``) — the shape of a linter's ``per-file-ignores`` entry, so
    a team's 👎 on ``S101`` under ``tests/`` can teach "S rules in tests" without teaching "every S rule" or
    "everything in tests" (a folder alone is where reactions happened to land, not a judgement). Empty for a
    finding without a path or without a letter-prefixed rule; the file name is not a folder."""
    from bot.memory import path_features  # the folders memory's path rules read, one reading of a path

    found = _LETTERS.search(str(origin or ""))
    if not found:
        return []
    folders = path_features(str(path or "").replace("\\", "/").lower())
    return [f"{found.group(1)}|{f}" for f in folders if f.startswith("dir:") and f != "dir:.."]


def _not_finite(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _number(value: object) -> float:
    """A finite JSON number (not a bool, not a string), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return float(value)


def combine(student_scores: Mapping[str, float], prior: Mapping[str, float], weight: float) -> dict[str, float]:
    """Weighted product of experts in log space: ``(1 - w) · log_softmax(student) + w · log(prior)``.

    ``student_scores`` are unnormalised per-label log scores (the softmax is taken here); the result is
    again a set of log scores, to be normalised by the caller. ``weight`` 0 returns the student's own
    log-probabilities, 1 the prior's.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"lexical weight must be within [0, 1], not {weight}")
    top = max(student_scores.values())
    log_z = top + math.log(sum(math.exp(v - top) for v in student_scores.values()))
    return {label: (1.0 - weight) * (student_scores[label] - log_z)
            + weight * math.log(max(prior.get(label, 0.0), 1e-12)) for label in student_scores}
