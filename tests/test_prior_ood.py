"""The leave-project-out benchmark of the lexical prior: which comments it rates and how repositories are dealt."""

from __future__ import annotations

from benchmarks.prior_ood import comments, folds_of, repository
from training.examples import Example


def _comment(repo_id: str, n: int) -> Example:
    return Example(code="", review="nit", label="trivial", id=f"crcpy-{repo_id}-{n}")


def test_only_review_comments_of_projects_not_kept_for_evaluation_are_rated() -> None:
    exam = [_comment("django-django", 1), _comment("scrapy-scrapy", 2), _comment("pypa-pip", 3)]
    dev = [_comment("pandas-dev-pandas", 4), Example(code="", review="x", label="major", id="sven-cwe-089-1")]
    rated = comments({"exam": exam, "dev": dev})
    assert [(part, repository(e)) for part, e in rated] == [("exam", "django/django"), ("dev", "pandas/dev")]


def test_every_repository_lands_in_exactly_one_fold_and_folds_stay_even() -> None:
    repos = ["a/a"] * 5 + ["b/b"] * 4 + ["c/c"] * 3 + ["d/d"] * 2 + ["e/e"]
    fold = folds_of(repos, 2)
    assert set(fold) == {"a/a", "b/b", "c/c", "d/d", "e/e"} and set(fold.values()) == {0, 1}
    sizes = [sum(repos.count(r) for r, f in fold.items() if f == k) for k in (0, 1)]
    assert abs(sizes[0] - sizes[1]) <= 5
