"""The lexical prior: scikit-learn parity of the plain-Python scorer, the product of experts, the weight choice,
bad files, the registry entry, the served rater and promotion."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from bot.errors import ModelError
from bot.models import resolve_model
from bot.rater.lexical import LexicalPrior, combine
from bot.rater.locate import packaged_model_path
from bot.severity import LABELS
from training.examples import Example, teacher_probabilities
from training.lexical import blend, choose_weight, export_prior, fit_prior
from training.registry import promote, write_manifest

WORDS = {
    "critical": ["SQL injection through string formatting", "command injection via shell", "hard-coded password",
                 "path traversal in upload handler", "unsafe deserialisation of user data", "remote code execution"],
    "major": ["this loop never terminates", "off by one error in the index", "race condition on the counter",
              "exception swallowed and lost", "wrong return value on error", "resource leak: file never closed"],
    "minor": ["rename this variable for clarity", "missing docstring on public function", "this could be a constant",
              "prefer pathlib over os.path", "duplicated branch could be merged", "magic number should be named"],
    "trivial": ["typo in comment", "trailing whitespace", "extra blank line", "spelling: recieve",
                "add a type hint to this parameter", "nit: line too long"],
}


def examples() -> list[Example]:
    out = []
    for label, texts in WORDS.items():
        for i, text in enumerate(texts):
            out += [Example(code="x = 1", review=text, label=label, id=f"{label}-{i}"),
                    Example(code="y = 2", review=f"{text} here too", label=label, id=f"{label}-{i}b")]
    return out


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    model = fit_prior(examples())
    path = export_prior(model, tmp_path_factory.mktemp("prior") / "lexical.json")
    return model, path


def test_the_plain_python_scorer_matches_scikit_learn(fitted) -> None:
    model, path = fitted
    prior = LexicalPrior.load(path)
    texts = ["SQL  injection\tin the\n\nquery", "Typo", "a", "", "   ", "ÜBER-lange Zeile: trailing whitespace",
             "off by one error; race condition on the counter!", "x" * 50, "日本語のコメント typo"]
    reference = teacher_probabilities(model, [Example(code="", review=t, label="minor") for t in texts])
    for text, want in zip(texts, reference):
        got = prior.probabilities(text)
        assert set(got) == set(LABELS) and math.isclose(sum(got.values()), 1.0, abs_tol=1e-9)
        assert max(abs(got[label] - want[label]) for label in LABELS) < 1e-5, text


def test_product_of_experts() -> None:
    student = {"critical": 2.0, "major": 1.0, "minor": 0.0, "trivial": -1.0}  # unnormalised log scores
    prior = {"critical": 0.1, "major": 0.2, "minor": 0.3, "trivial": 0.4}
    z = math.log(sum(math.exp(v) for v in student.values()))
    alone = combine(student, prior, 0.0)
    assert all(math.isclose(alone[k], student[k] - z) for k in LABELS)
    only = combine(student, prior, 1.0)
    assert all(math.isclose(only[k], math.log(prior[k])) for k in LABELS)
    half = combine(student, prior, 0.5)
    assert all(math.isclose(half[k], 0.5 * (student[k] - z) + 0.5 * math.log(prior[k])) for k in LABELS)
    (mixed,) = blend([{k: math.exp(v - z) for k, v in student.items()}], [prior], 0.5)
    assert math.isclose(sum(mixed.values()), 1.0) and max(mixed, key=mixed.get) == "critical"
    with pytest.raises(ValueError, match="within"):
        combine(student, prior, 1.5)


def test_weight_is_chosen_on_the_exam_and_ties_keep_the_student() -> None:
    exam = [Example(code="", review="r", label=label) for label in ("critical", "major", "minor", "trivial")]
    right = [{k: (0.7 if k == e.label else 0.1) for k in LABELS} for e in exam]
    wrong_half = [right[0], right[1], {k: 0.25 for k in LABELS} | {"critical": 0.3}, right[3]]
    weight, grid = choose_weight(exam, wrong_half, right)  # the prior fixes the student's one mistake
    assert weight > 0 and grid["0"]["accuracy"] == 0.75 and grid[f"{weight:g}"]["accuracy"] == 1.0
    weight, grid = choose_weight(exam, right, right)
    assert weight == 0.0 and len(grid) == 5


def test_bad_prior_files_are_clear_model_errors(fitted, tmp_path) -> None:
    _, path = fitted
    with pytest.raises(ModelError, match="is missing"):
        LexicalPrior.load(tmp_path / "none.json")
    (tmp_path / "broken.json").write_text('{"format": "sieve-lexical-1", "classes": [')
    with pytest.raises(ModelError, match="cannot read"):
        LexicalPrior.load(tmp_path / "broken.json")
    data = json.loads(path.read_text())
    for change in ({"format": "other"}, {"classes": ["a", "b", "c", "d"]}, {"intercept": [0.0]},
                   {"blocks": [{**data["blocks"][0], "analyzer": "char"}]}):
        (tmp_path / "bad.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(ModelError, match="malformed"):
            LexicalPrior.load(tmp_path / "bad.json")
    with pytest.raises(Exception, match="at least two labels"):
        fit_prior([Example(code="", review="only one", label="minor")] * 4)


def _model_folder(folder, prior_path, weight=0.5):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter.gguf").write_bytes(b"GGUF-not-used")
    shutil.copy(prior_path, folder / "lexical.json")
    from training.export import sha256_file

    write_manifest(folder, name=folder.name, base="smollm2", base_path=packaged_model_path(),
                   adapter_file="adapter.gguf", data_hash="h", hyperparameters={}, metrics={}, command="test")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["lexical"] = {"file": "lexical.json", "sha256": sha256_file(folder / "lexical.json"), "weight": weight}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_registry_entry_is_verified_and_reaches_the_rater_options(fitted, tmp_path) -> None:
    _, path = fitted
    folder = _model_folder(tmp_path / "models" / "mine", path)
    info = resolve_model(folder)
    assert info.lexical == (folder / "lexical.json", 0.5) and "+lexical@" in info.model_id
    options = info.rater_options()
    assert options["lexical_path"] == str(folder / "lexical.json") and options["lexical_weight"] == 0.5
    manifest = json.loads((folder / "manifest.json").read_text())
    for bad in ({"file": "lexical.json", "weight": 2}, {"file": "lexical.json", "weight": True}, {"weight": 0.5}):
        (folder / "manifest.json").write_text(json.dumps({**manifest, "lexical": bad}))
        with pytest.raises(ModelError, match="lexical must be"):
            resolve_model(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "lexical.json").write_text((folder / "lexical.json").read_text().replace("0", "1", 1))
    with pytest.raises(ModelError, match="lexical prior .* sha256"):
        resolve_model(folder)


def test_promotion_carries_the_prior_file(fitted, tmp_path) -> None:
    _, path = fitted
    folder = _model_folder(tmp_path / "run" / "candidate", path)
    assert promote(folder, "default", {"accuracy": 0.5, "macro_f1": 0.4}, None, root=tmp_path / "models")
    installed = resolve_model("default", tmp_path / "models")
    assert installed.lexical == (tmp_path / "models" / "default" / "lexical.json", 0.5)


def test_the_served_rater_combines_the_student_with_the_prior(fitted) -> None:
    from bot.rater.llamacpp import LlamaCppRater

    _, path = fitted
    pairs = [("cursor.execute('SELECT * FROM t WHERE id=%s' % uid)", "SQL injection through string formatting"),
             ("def f( x ):", "trailing whitespace")]
    alone = LlamaCppRater(weight_format="as-is")
    try:
        student = [dict(r.probabilities) for r in alone.rate_texts(pairs)]
    finally:
        alone.close()
    served = LlamaCppRater(weight_format="as-is", lexical_path=path, lexical_weight=0.5)
    try:
        ratings = served.rate_texts(pairs)
    finally:
        served.close()
    prior = LexicalPrior.load(path)
    want = blend(student, [prior.probabilities(review) for _, review in pairs], 0.5)
    for rating, expected in zip(ratings, want):
        assert max(abs(rating.probabilities[k] - expected[k]) for k in LABELS) < 1e-4
    # the bare base calls everything critical; the prior pulls the whitespace nit toward trivial
    assert ratings[1].probabilities["trivial"] > 3 * student[1]["trivial"]
    assert ratings[0].probabilities["critical"] > ratings[1].probabilities["critical"]


def test_loop_candidates_are_served_the_way_their_parent_is(fitted, tmp_path) -> None:
    from training.loop import LoopConfig, candidate_prior

    _, path = fitted
    parent = resolve_model(_model_folder(tmp_path / "models" / "default", path, weight=0.25))
    folder = tmp_path / "round-01" / "candidate"
    folder.mkdir(parents=True)
    entry = candidate_prior(examples(), folder, LoopConfig(), parent)["lexical"]
    assert entry["weight"] == 0.25 and (folder / "lexical.json").is_file()
    assert LexicalPrior.load(folder / "lexical.json").probabilities("typo in comment")["trivial"] > 0.5
    assert candidate_prior(examples(), folder, LoopConfig(lexical_weight=0.0), parent) == {}
    bare = resolve_model("smollm2")
    assert candidate_prior(examples(), folder, LoopConfig(), bare) == {}
    assert candidate_prior(examples(), folder, LoopConfig(lexical_weight=0.5), bare)["lexical"]["weight"] == 0.5


def test_the_prior_can_be_switched_off_by_config_and_flag() -> None:
    from bot.cli import build_parser, make_config
    from bot.config import from_mapping

    assert from_mapping({}).lexical is True and from_mapping({"lexical": "false"}).lexical is False
    args = build_parser().parse_args(["review", "--diff", "x.patch", "--no-lexical"])
    assert make_config(args).lexical is False


def test_a_curriculum_missing_a_level_gets_no_prior(fitted, tmp_path) -> None:
    from training.loop import LoopConfig, candidate_prior

    three = [e for e in examples() if e.label != "critical"]
    assert candidate_prior(three, tmp_path, LoopConfig(lexical_weight=0.5), resolve_model("smollm2")) == {}
    assert not (tmp_path / "lexical.json").exists()


def test_examine_chooses_the_weight_on_the_exam_and_reports_both(fitted) -> None:
    from training.recipe import examine

    _, path = fitted
    items = examples()
    exam, dev = items[::3], items[1::3]
    fields = examine(None, "smollm2", exam, dev, template="chatml", code_chars=0, lexical=path)
    entry = fields["lexical"]
    assert entry["file"] == "lexical.json" and len(entry["sha256"]) == 64 and set(entry["exam_by_weight"]) == {
        "0", "0.25", "0.5", "0.75", "1"}
    # the bare base calls everything critical; the prior fitted on these very texts knows better
    assert entry["weight"] > 0
    assert fields["metrics"]["exam"]["accuracy"] > fields["metrics_student"]["exam"]["accuracy"]
    assert fields["metrics"]["exam"]["accuracy"] == entry["exam_by_weight"][f"{entry['weight']:g}"]["accuracy"]


def test_a_tools_scoped_prior_reads_analyser_findings_and_leaves_free_text_to_the_student(fitted) -> None:
    from bot.prompt import origin_text
    from bot.rater.llamacpp import LlamaCppRater

    _, path = fitted
    origin = origin_text("ruff", "W291", "warning")
    items = [("def f( x ):", "trailing whitespace", ""), ("def f( x ):", "trailing whitespace", origin)]
    alone = LlamaCppRater(weight_format="as-is")
    scoped = LlamaCppRater(weight_format="as-is", lexical_path=path, lexical_weight=0.5, lexical_scope="tools")
    everywhere = LlamaCppRater(weight_format="as-is", lexical_path=path, lexical_weight=0.5)
    try:
        student = [dict(r.probabilities) for r in alone.rate_texts(items)]
        tools = [dict(r.probabilities) for r in scoped.rate_texts(items)]
        every = [dict(r.probabilities) for r in everywhere.rate_texts(items)]
    finally:
        for rater in (alone, scoped, everywhere):
            rater.close()
    # free text (a person's or an LLM's review): exactly the student's rating under "tools", moved under "all"
    assert max(abs(tools[0][k] - student[0][k]) for k in LABELS) < 1e-6
    assert every[0]["trivial"] > 3 * student[0]["trivial"]
    # an analyser finding: both scopes combine the prior, identically
    assert max(abs(tools[1][k] - every[1][k]) for k in LABELS) < 1e-6
    assert tools[1]["trivial"] > 2 * student[1]["trivial"]


def test_the_scope_comes_from_the_manifest_and_names_itself_in_the_model_id(fitted, tmp_path) -> None:
    _, path = fitted
    folder = _model_folder(tmp_path / "models" / "mine", path)
    assert resolve_model(folder).lexical_scope == "all" and not resolve_model(folder).model_id.endswith("/tools")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["lexical"]["scope"] = "tools"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    info = resolve_model(folder)
    assert info.lexical_scope == "tools" and info.model_id.endswith("/tools")
    assert info.rater_options()["lexical_scope"] == "tools" and info.rater_options(lexical=False)["lexical_scope"] == "all"
    manifest["lexical"]["scope"] = "reviews"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="lexical.scope must be one of all, tools"):
        resolve_model(folder)


def test_the_shipped_default_keeps_its_prior_off_free_text() -> None:
    assert resolve_model("default").lexical_scope == "tools"


def test_blend_leaves_items_out_of_the_priors_scope_to_the_student() -> None:
    from training.lexical import in_scope, prior_probabilities

    student = [{"critical": 0.7, "major": 0.1, "minor": 0.1, "trivial": 0.1}] * 2
    prior = [None, {"critical": 0.01, "major": 0.01, "minor": 0.01, "trivial": 0.97}]
    out = blend(student, prior, 0.5)
    assert out[0] == student[0] and out[1]["trivial"] > out[1]["critical"]
    free = Example(code="", review="nit", label="trivial")
    tool = Example(code="", review="nit", label="trivial", meta={"origin": "ruff E501"})
    assert not in_scope(free, "tools") and in_scope(tool, "tools") and in_scope(free, "all")
    fake = type("P", (), {"probabilities": lambda self, text: {"trivial": 1.0}})()
    assert prior_probabilities(fake, [free, tool], "tools") == [None, {"trivial": 1.0}]


def test_a_warm_started_prior_learns_the_round_and_keeps_the_parent_elsewhere(fitted, tmp_path) -> None:
    """The team says docstring nits are trivial (two labels and a bare 👎 that allows only trivial), beside replay
    of the parent's own items as a round has: the updated prior moves there, an unrelated text keeps the parent's
    reading, and a strong anchor keeps the parent."""
    from training.lexical import update_prior

    _, path = fitted
    text = "missing docstring on public function"
    parent = LexicalPrior.load(path).probabilities(text)
    round_items = [Example(code="", review=text, label="trivial", id="t1"),
                   Example(code="", review=f"{text} here", label="trivial", id="t2"),
                   Example(code="", review=f"{text} again", label="minor", id="t3",
                           meta={"rejected": "minor", "allowed": ["trivial"], "vote": -1})]
    round_items += [e for e in examples() if "docstring" not in e.review]
    updated = LexicalPrior.load(update_prior(path, round_items, tmp_path / "new.json", scope="all"))
    after = updated.probabilities(text)
    assert parent["minor"] > parent["trivial"] and after["trivial"] > 0.5 > parent["trivial"]
    other = "SQL injection through string formatting"
    before_other, after_other = LexicalPrior.load(path).probabilities(other), updated.probabilities(other)
    assert max(after_other, key=after_other.get) == "critical"  # the replayed label only sharpens
    assert after_other["trivial"] <= before_other["trivial"] and after_other["critical"] >= before_other["critical"]
    anchored = LexicalPrior.load(update_prior(path, round_items, tmp_path / "anchored.json", scope="all", l2=1e3))
    assert max(abs(anchored.probabilities(text)[k] - parent[k]) for k in LABELS) < 0.02
    with pytest.raises(Exception, match="no item of this round"):  # a tools-only prior reads none of these
        update_prior(path, round_items, tmp_path / "none.json", scope="tools")


def test_folder_terms_are_the_rules_letters_in_each_folder() -> None:
    from bot.rater.lexical import path_terms

    assert path_terms("pkg/tests/test_x.py", "ruff S101, level: security") == ["S|dir:pkg", "S|dir:tests"]
    assert path_terms("Pkg/./Tests/t.py", "ruff PLR2004") == ["PLR|dir:pkg", "PLR|dir:tests"]
    assert path_terms("pkg/tests/t.py", "") == []  # no rule (an LLM's finding): nothing a linter could scope
    assert path_terms("setup.py", "ruff S101") == [] and path_terms("", "ruff S101") == []


def test_a_prior_learns_a_teams_folder_only_when_asked_and_only_where_the_reactions_were(fitted, tmp_path) -> None:
    """Two 👎 for S101 under tests/ and a 👍 for S101 elsewhere, with the same words: a prior updated with
    ``paths`` lowers S101 under tests/ and not under src/; without ``paths`` it cannot tell them apart (the two
    findings read the same), and the parent — with no folder block — ignores the path altogether."""
    from training.lexical import update_prior

    _, path = fitted
    origin = "ruff S101, level: security"
    text = "hard-coded password"

    def item(i, where, label, vote=1):
        meta = {"origin": origin, "path": where, "vote": vote}
        if vote < 0:
            meta.update(rejected="major", allowed=["minor", "trivial"])
        return Example(code="", review=text, label=label, id=f"f{i}", meta=meta)

    round_items = [item(1, "pkg/tests/test_a.py", "major", -1), item(2, "pkg/tests/test_b.py", "major", -1),
                   item(3, "pkg/src/a.py", "critical"), item(4, "pkg/src/b.py", "critical")]
    round_items += [Example(code="", review=e.review, label=e.label, id=e.id, meta={"origin": origin})
                    for e in examples()]
    parent = LexicalPrior.load(path)
    assert parent.probabilities(text, "pkg/tests/x.py", origin) == parent.probabilities(text)
    with_paths = LexicalPrior.load(update_prior(path, round_items, tmp_path / "p.json", scope="tools", paths=True))
    assert with_paths.reads_paths
    in_tests = with_paths.probabilities(text, "pkg/tests/test_c.py", origin)
    in_src = with_paths.probabilities(text, "pkg/src/c.py", origin)
    low = lambda p: p["minor"] + p["trivial"]
    assert low(in_tests) > 2 * low(in_src)
    plain = LexicalPrior.load(update_prior(path, round_items, tmp_path / "n.json", scope="tools"))
    assert not plain.reads_paths
    assert plain.probabilities(text, "pkg/tests/test_c.py", origin) == plain.probabilities(text, "pkg/src/c.py",
                                                                                           origin)


def test_the_served_rating_hands_each_findings_path_to_a_folder_prior(fitted, tmp_path) -> None:
    from bot.findings import Anchor, Finding
    from bot.rater.student import Scored, Student, StudentRater
    from training.lexical import update_prior

    _, path = fitted
    origin = "ruff S101, level: security"
    meta = {"origin": origin, "vote": -1, "rejected": "major", "allowed": ["minor", "trivial"]}
    round_items = [Example(code="", review="hard-coded password", label="major", id=f"t{i}",
                           meta={**meta, "path": f"pkg/tests/test_{i}.py"}) for i in range(3)]
    round_items += [Example(code="", review=e.review, label=e.label, id=e.id, meta={"origin": origin})
                    for e in examples()]
    prior = update_prior(path, round_items, tmp_path / "p.json", scope="tools", paths=True)

    class Flat:  # a backend whose student has no opinion: the rating is the prior's alone
        def check(self, student) -> None:
            return None

        def fits(self, text: str) -> bool:
            return True

        def score(self, prompts):
            return [Scored({label: 0.0 for label in LABELS}, 1) for _ in prompts]

    student = Student.from_options(model_id="flat", lexical_path=prior, lexical_weight=1.0, lexical_scope="tools")
    rater = StudentRater(student, Flat())
    found = [Finding(Anchor(where, 3), "S101 hard-coded password", "ruff", code="", rule_id="S101", level="security")
             for where in ("pkg/tests/test_z.py", "pkg/src/z.py")]
    assert origin.split(",")[0] in found[0].origin()
    in_tests, in_src = (r.probabilities for r in rater.rate(found))
    assert in_tests["trivial"] + in_tests["minor"] > in_src["trivial"] + in_src["minor"] + 0.1
