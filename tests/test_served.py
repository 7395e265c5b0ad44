"""Students behind llama-cpp-python's real OpenAI-compatible server rate exactly as in-process, one server for
many teams: the packaged default (Gemma 3 270M f16 + adapter, lexical prior) and smollm2-student."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import app
from bot import config as cfg
from bot.errors import EndpointError
from bot.models import ModelInfo, resolve_model
from bot.severity import LABELS
from tests.llama_server import free_port, need_server_extras, running

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DEV = SHARED / "data" / "severity" / "dev.jsonl"
STUDENTS = ("default", "smollm2-student")
N_CTX = 1024  # the same window on both sides; every dev prompt fits it
TOLERANCE = 1e-3


def dev_pairs(n: int, seed: int = 21) -> list[tuple[str, str]]:
    if not DEV.is_file():
        pytest.skip(f"shared data not found at {DEV}")
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["code"], row["review"]) for row in random.Random(seed).sample(rows, n)]


@pytest.fixture(scope="module")
def students() -> dict[str, ModelInfo]:
    pytest.importorskip("llama_cpp")
    return {name: resolve_model(name) for name in STUDENTS}


def server_config(students: dict[str, ModelInfo], port: int) -> dict:
    """One llama-cpp-python server for every team: each student under its own name (base f16 copy + adapter)."""
    from bot.rater.locate import resolve_weights

    return {"host": "127.0.0.1", "port": port, "models": [
        {"model": str(resolve_weights(info.base_path, "f16")), "model_alias": name,
         "lora_path": str(info.adapter_path), "n_ctx": N_CTX, "n_threads": 2, "n_threads_batch": 2,
         "logits_all": True, "verbose": False} for name, info in students.items()]}


@pytest.fixture(scope="module")
def server(students: dict[str, ModelInfo], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_server_extras()
    port = free_port()
    path = tmp_path_factory.mktemp("server") / "models.json"
    path.write_text(json.dumps(server_config(students, port)), encoding="utf-8")
    with running(["--config_file", str(path)], port) as base:
        yield base


def served(url: str, name: str, tmp_path: Path, **flags: str):
    """The rater `sieve review --rater openai --rater-base-url URL --model NAME` builds."""
    config = cfg.build({"rater": "openai", "rater_base_url": url, "model": name, "timeout": 600.0, **flags},
                       environ={}, cwd=tmp_path)
    return app.make_rater(config)


def in_process(info: ModelInfo):
    from bot.rater.llamacpp import LlamaCppRater

    return LlamaCppRater(**info.rater_options(), n_ctx=N_CTX)


def assert_same(far, near) -> float:
    """Every finding within the tolerance; returns the largest difference (printed by the parity test)."""
    assert len(far) == len(near)
    worst = 0.0
    for i, (a, b) in enumerate(zip(far, near)):
        gap = max(abs(a.probabilities[k] - b.probabilities[k]) for k in LABELS)
        assert gap <= TOLERANCE, f"finding {i}: served {a.probabilities} vs in-process {b.probabilities}"
        assert (a.model_id, a.prompt_version, a.truncated) == (b.model_id, b.prompt_version, b.truncated)
        worst = max(worst, gap)
    return worst


@pytest.mark.parametrize("name", STUDENTS)
def test_a_served_student_rates_as_in_process(server: str, students, name: str, tmp_path: Path) -> None:
    """50 dev findings (fixed seed) through `--rater openai`: every probability within 1e-3 of the in-process
    rater's, the manifest's prompt version, template, code budget and lexical prior included."""
    pairs = dev_pairs(50)
    started = time.monotonic()
    far = served(server, name, tmp_path, rater_model=name).rate_texts(pairs)
    seconds = time.monotonic() - started
    local = in_process(students[name])
    try:
        near = local.rate_texts(pairs)
    finally:
        local.close()
    worst = assert_same(far, near)
    print(f"\n{name}: {len(far)} findings served in {seconds:.0f} s, largest |dp| {worst:.1e}")


def test_two_teams_share_one_server_and_each_gets_its_own_student(server: str, students, tmp_path: Path) -> None:
    """Requests for two students interleave on one server; each team's ratings are its own student's."""
    pairs = dev_pairs(3, seed=7)
    team_a, team_b = served(server, "default", tmp_path), served(server, "smollm2-student", tmp_path)
    first_a = team_a.rate_texts(pairs)
    first_b = team_b.rate_texts(pairs)
    again_a = team_a.rate_texts(pairs)
    expected = {}
    for name in STUDENTS:
        local = in_process(students[name])
        try:
            expected[name] = local.rate_texts(pairs)
        finally:
            local.close()
    assert_same(first_a, expected["default"])
    assert_same(again_a, expected["default"])
    assert_same(first_b, expected["smollm2-student"])
    assert max(abs(a.probabilities[k] - b.probabilities[k]) for a, b in zip(first_a, first_b) for k in LABELS) > 0.05


def test_a_student_the_server_does_not_serve_is_refused(server: str, tmp_path: Path) -> None:
    """llama-cpp-python answers an unknown name with its first model; Sieve refuses instead of rating with it."""
    with pytest.raises(EndpointError, match="does not serve model 'team-c'") as caught:
        served(server, "default", tmp_path, rater_model="team-c")
    assert "\n" not in str(caught.value) and "smollm2-student" in str(caught.value)
