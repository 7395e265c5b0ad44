"""The model registry: manifests, resolving (with sha256 checks), promotion only when better, the listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.errors import ModelError
from bot.models import list_models, models_list_main, resolve_model
from bot.prompt import PROMPT_VERSION
from bot.rater.locate import packaged_model_path
from training.registry import PromotionRule, beats, promote, write_manifest

KEYS = {"name", "base", "adapter", "prompt_version", "data_hash", "hyperparameters", "metrics",
        "threshold_calibration", "parent", "library_versions", "command", "created"}


def candidate(folder: Path, payload: bytes, name: str = "cand", dev: dict | None = None) -> Path:
    """A model folder with an adapter file and a manifest written the way training writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter.gguf").write_bytes(b"GGUF" + payload)
    write_manifest(folder, name=name, base="smollm2", base_path=packaged_model_path(), adapter_file="adapter.gguf",
                   data_hash="abc123", hyperparameters={"rank": 16}, metrics={"dev": dev or {}},
                   command="sieve train loop")
    return folder


def test_manifest_round_trip_and_resolve_by_name_and_folder(tmp_path) -> None:
    folder = candidate(tmp_path / "models" / "mine", b"weights-1", name="mine", dev={"accuracy": 0.61, "macro_f1": 0.5})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert KEYS <= set(manifest)
    assert manifest["base"]["file"] == packaged_model_path().name and len(manifest["base"]["sha256"]) == 64
    assert manifest["prompt_version"] == PROMPT_VERSION and "python" in manifest["library_versions"]
    info = resolve_model("mine", tmp_path / "models")
    assert info.base_path == packaged_model_path() and info.adapter_path == folder / "adapter.gguf"
    assert info.model_id == f"mine@{manifest['adapter']['sha256'][:12]}" and info.template == "chatml"
    assert resolve_model(folder).model_id == info.model_id
    assert [m.name for m in list_models(tmp_path / "models")] == ["mine"]


def test_changed_or_missing_adapter_is_a_model_error(tmp_path) -> None:
    folder = candidate(tmp_path / "m", b"weights-1")
    (folder / "adapter.gguf").write_bytes(b"GGUF" + b"weights-2")  # same size, other bytes
    with pytest.raises(ModelError, match="sha256 .* the manifest says"):
        resolve_model(folder)
    (folder / "adapter.gguf").unlink()
    with pytest.raises(ModelError, match="adapter .* is missing"):
        resolve_model(folder)


def test_names_that_are_not_models(tmp_path) -> None:
    candidate(tmp_path / "reg" / "alpha", b"x")
    with pytest.raises(ModelError, match="no model 'beta'.*alpha"):
        resolve_model("beta", tmp_path / "reg")
    (tmp_path / "reg" / "broken").mkdir()
    (tmp_path / "reg" / "broken" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        resolve_model(tmp_path / "reg" / "broken")
    assert [m.name for m in list_models(tmp_path / "reg")] == ["alpha"]  # the broken folder is skipped


def test_base_is_the_default_students_own_base_without_adapter(tmp_path) -> None:
    shipped = json.loads((Path(__file__).resolve().parents[1] / "models" / "default" / "manifest.json").read_text())
    base = resolve_model("base")
    assert base.adapter_path is None and base.name == "base"
    assert base.base_path.name == shipped["base"]["file"] and base.model_id == f"{shipped['base']['name']}-base"
    # yours first: a `default` of your own trained on SmolLM2 makes `base` SmolLM2
    candidate(tmp_path / "reg" / "default", b"x", name="default")
    assert resolve_model("base", tmp_path / "reg").base_path == packaged_model_path()


def test_packaged_bases_and_plain_gguf_resolve_without_adapter() -> None:
    small = resolve_model("smollm2")
    assert small.adapter_path is None and small.base_path == packaged_model_path() and small.model_id == "smollm2-base"
    direct = resolve_model(str(packaged_model_path()))
    assert direct.adapter_path is None and direct.base_path == packaged_model_path()


def test_promote_only_when_the_heldout_exam_improves(tmp_path) -> None:
    root = tmp_path / "models"
    first = candidate(tmp_path / "run" / "r1", b"one")
    assert promote(first, "default", {"accuracy": 0.40, "macro_f1": 0.30}, None, root=root)
    installed = json.loads((root / "default" / "manifest.json").read_text())
    assert installed["name"] == "default" and installed["metrics"]["exam"]["macro_f1"] == 0.30
    worse = candidate(tmp_path / "run" / "r2", b"two")
    assert not promote(worse, "default", {"accuracy": 0.50, "macro_f1": 0.29}, installed["metrics"]["exam"], root=root)
    assert (root / "default" / "adapter.gguf").read_bytes() == b"GGUFone"
    better = candidate(tmp_path / "run" / "r3", b"three")
    assert promote(better, "default", {"accuracy": 0.45, "macro_f1": 0.35}, installed["metrics"]["exam"], root=root)
    now = resolve_model("default", root)
    assert (root / "default" / "adapter.gguf").read_bytes() == b"GGUFthree"
    assert now.manifest["parent"] == f"default@{installed['adapter']['sha256'][:12]}"
    assert sorted(p.name for p in root.iterdir()) == ["default"]  # no staging folders left behind


def test_promotion_rule_tie_break_and_margin() -> None:
    assert beats({"macro_f1": 0.5, "accuracy": 0.6}, {"macro_f1": 0.5, "accuracy": 0.55})
    assert not beats({"macro_f1": 0.5, "accuracy": 0.5}, {"macro_f1": 0.5, "accuracy": 0.55})
    assert not beats({"macro_f1": 0.51}, {"macro_f1": 0.5}, PromotionRule(min_gain=0.02))
    assert beats({"accuracy": 0.7}, {"accuracy": 0.6}, PromotionRule(metric="accuracy"))


def test_models_list_table_and_json(tmp_path, capsys) -> None:
    candidate(tmp_path / "reg" / "default", b"x", name="default", dev={"accuracy": 0.612, "macro_f1": 0.544})
    assert models_list_main(["--models-dir", str(tmp_path / "reg")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["name", "base", "prompt", "dev"]
    rows: dict[str, str] = {}
    for line in table[1:]:
        if line.strip():
            rows.setdefault(line.split()[0], line)  # the first row of a name: yours before the shipped one
    assert "0.612" in rows["default"] and "0.544" in rows["default"]
    # `base` says whose base it is: here the user's own default, trained on SmolLM2
    assert rows["base"].split()[1] == packaged_model_path().name and "base of default (smollm2)" in rows["base"]
    assert rows["smollm2"].split()[1] == packaged_model_path().name and "gemma-3-270m" in rows["gemma3-270m"]
    assert models_list_main(["--root", str(tmp_path / "reg"), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    (entry,) = [e for e in listed if e["source"] == "yours"]
    assert entry["name"] == "default" and entry["metrics"]["dev"]["accuracy"] == 0.612
    # the shipped students are listed too; the shipped `default` is hidden by the user's
    assert {(e["name"], e["source"]) for e in listed} >= {("default", "packaged, hidden"), ("smollm2-student", "packaged")}


def test_label_bias_from_the_manifest_is_validated(tmp_path) -> None:
    folder = candidate(tmp_path / "m", b"w")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert resolve_model(folder).label_bias is None
    manifest["label_bias"] = {"values": {"critical": 0, "major": 0.25, "minor": -0.5, "trivial": 1}, "fitted_on": "x"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert resolve_model(folder).label_bias == {"critical": 0.0, "major": 0.25, "minor": -0.5, "trivial": 1.0}
    for bad in ({"critical": 1}, {"critical": 0, "major": "0", "minor": 0, "trivial": 0}, [0, 0, 0, 0]):
        manifest["label_bias"] = bad
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelError, match="label_bias must map"):
            resolve_model(folder).label_bias  # noqa: B018
    manifest["label_bias"] = {"critical": 0, "major": 0, "minor": 0, "trivial": float("inf")}
    (folder / "manifest.json").write_text(json.dumps(manifest))  # json writes it as Infinity
    with pytest.raises(ModelError, match="Infinity is not a number a manifest may hold"):
        resolve_model(folder)


def test_code_chars_from_the_manifest_is_validated(tmp_path) -> None:
    from bot.prompt import MAX_CODE_CHARS

    folder = candidate(tmp_path / "m", b"w")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert resolve_model(folder).code_chars == MAX_CODE_CHARS
    manifest["code_chars"] = 0
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert resolve_model(folder).code_chars == 0
    for bad in (-5, "0", 2.5, None):
        manifest["code_chars"] = bad
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelError, match="code_chars"):
            resolve_model(folder).code_chars  # noqa: B018


def test_models_list_says_which_backend_serves_each_student(tmp_path, capsys) -> None:
    candidate(tmp_path / "reg" / "team-a", b"x", name="team-a")
    assert models_list_main(["--models-dir", str(tmp_path / "reg")]) == 0
    table = capsys.readouterr().out
    assert "served by" in table.splitlines()[0]
    assert all("llamacpp, openai" in line for line in table.splitlines()[1:] if line.startswith("team-a "))
    assert models_list_main(["--models-dir", str(tmp_path / "reg"), "--format", "json"]) == 0
    (entry,) = [e for e in json.loads(capsys.readouterr().out) if e["name"] == "team-a"]
    assert set(entry["backends"]) == {"llamacpp", "openai"}
    assert "as model 'team-a'" in entry["backends"]["openai"] and "needs a peft adapter" in entry["backends"]["openai"]
    (tmp_path / "reg" / "team-a" / "peft").mkdir()
    (tmp_path / "reg" / "team-a" / "peft" / "adapter_config.json").write_text("{}")
    assert models_list_main(["--models-dir", str(tmp_path / "reg"), "--format", "json"]) == 0
    (entry,) = [e for e in json.loads(capsys.readouterr().out) if e["name"] == "team-a"]
    assert "vLLM: base + peft/" in entry["backends"]["openai"]
