"""bot.http: the pure decisions, the retry loop, pacing, and the per-request deadline against a real slow server."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
import requests

from bot import http
from bot.errors import EndpointError, HostError
from tests.trickle import TrickleServer

POLICY = http.Policy(retries=3, backoff=1.0, max_wait=30.0)


def test_retry_after_reads_seconds_dates_and_milliseconds():
    now = time.time()
    assert http.retry_after({"Retry-After": "7"}, now) == 7.0
    assert http.retry_after({"retry-after-ms": "250"}, now) == 0.25
    assert 8.0 <= http.retry_after({"Retry-After": formatdate(now + 10, usegmt=True)}, now) <= 10.0
    assert http.retry_after({"Retry-After": "soon"}, now) is None and http.retry_after({}, now) is None


@pytest.mark.parametrize("answer,attempt,expected", [
    (http.Answer(200), 0, ("ok", False, 0.0)),
    (http.Answer(502), 0, ("server", True, 1.0)),
    (http.Answer(503), 2, ("server", True, 4.0)),
    (http.Answer(503), 3, ("server", False, 8.0)),  # the budget is spent
    (http.Answer(429, {"Retry-After": "7"}), 0, ("limited", True, 7.0)),
    (http.Answer(429), 1, ("limited", True, 2.0)),  # no header: back-off
    (http.Answer(403, {}, "You have exceeded a secondary rate limit"), 0, ("limited", True, 1.0)),
    (http.Answer(403, {}, "Resource not accessible by integration"), 0, ("refused", False, 0.0)),
    (http.Answer(404), 0, ("refused", False, 0.0)),
    (http.Answer(failure="timeout"), 0, ("timeout", True, 1.0)),
    (http.Answer(failure="deadline"), 1, ("timeout", True, 2.0)),
    (http.Answer(failure="connection"), 0, ("connection", True, 1.0)),
])
def test_decide(answer, attempt, expected):
    verdict = http.decide(answer, attempt, POLICY, now=1000.0)
    assert (verdict.kind, verdict.retry, verdict.wait) == expected


def test_reset_headers_and_the_one_cap():
    primary = http.Answer(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}, "API rate limit")
    assert http.decide(primary, 0, POLICY, now=1000.0).wait == 11.0
    gitlab = http.Answer(429, {"RateLimit-Reset": "1005"})
    assert http.decide(gitlab, 0, POLICY, now=1000.0).wait == 5.0
    tomorrow = http.decide(http.Answer(429, {"Retry-After": "86400"}), 0, POLICY, now=1000.0)
    assert tomorrow.too_long and not tomorrow.retry
    assert http.decide(http.Answer(502), 9, http.Policy(retries=20, max_wait=30.0), 0.0).wait == 30.0
    assert http.decide(http.Answer(502), 0, POLICY, 0.0).ambiguous
    assert not http.decide(http.Answer(429), 0, POLICY, 0.0).ambiguous
    slow_github = http.Policy(limit_backoff=60.0)
    assert http.decide(http.Answer(429), 1, slow_github, 0.0).wait == 120.0


def test_run_retries_then_fails_and_a_landed_write_is_not_resent():
    sleeps: list[float] = []
    answers = iter([http.Answer(502), http.Answer(502), http.Answer(502), http.Answer(502)])

    class Failed(Exception):
        pass

    def call():
        raise Failed()

    def fail(answer, verdict, attempts):
        return EndpointError(f"gave up after {attempts} attempts on {answer.status}")

    with pytest.raises(EndpointError, match="gave up after 4 attempts on 502"):
        http.run(call, POLICY, classify=lambda exc: next(answers), fail=fail, sleep=sleeps.append)
    assert sleeps == [1.0, 2.0, 4.0]
    counters = http.Counters()
    assert http.run(call, POLICY, classify=lambda exc: http.Answer(502), fail=fail, sleep=lambda s: None,
                    counters=counters, landed=lambda: True) is None
    assert counters.retries == 1
    with pytest.raises(KeyError):  # not an HTTP failure: re-raised untouched
        http.run(lambda: {}["x"], POLICY, classify=lambda exc: None, fail=fail)


def test_the_pacer_keeps_the_pause_between_writes():
    now = [100.0]
    sleeps: list[float] = []
    pacer = http.Pacer(1.0, sleeps.append, clock=lambda: now[0])
    pacer.before()
    pacer.after()
    now[0] += 0.25
    pacer.before()
    assert sleeps == [0.75]


def test_a_trickling_server_cannot_stretch_a_request_past_its_deadline():
    """One byte every 0.5 s never trips a 1 s read timeout; the 2 s deadline ends the request."""
    counters = http.Counters()
    session = http.requests_session(http.Policy(retries=1, timeout=1.0), counters, sleep=lambda s: None,
                                    retry=True)
    started = time.monotonic()
    with TrickleServer(interval=0.5) as server, pytest.raises(http.DeadlineExceeded) as info:
        session.get(f"{server.url}/slow", timeout=1.0)
    assert "no complete answer within the 2 s deadline" in str(info.value) and "2 attempt(s)" in str(info.value)
    assert counters.api_calls == 2 and counters.retries == 1
    assert time.monotonic() - started < 60  # without the deadline: 200+ s


def test_the_github_host_ends_a_trickling_call_with_a_clear_timeout_error():
    from bot.hosts.base import MergeRequestRef
    from bot.hosts.github import GitHubHost

    with TrickleServer(interval=0.5) as server:
        host = GitHubHost("ghp_" + "T" * 36, base_url=server.url, timeout=1, max_retries=0, sleep=lambda s: None)
        with pytest.raises(HostError) as info:
            host.fetch(MergeRequestRef("github", "octo/app", 1))
    assert "no complete answer within the 2 s deadline" in str(info.value)
    assert host.counters.api_calls == 1


def test_the_llm_reviewer_ends_a_trickling_call_with_a_clear_timeout_error(tmp_path):
    from bot.diff import parse
    from bot.reviewers import REVIEWERS, LLMConfig, ReviewContext
    from tests.gitrepo import make_repo

    repo = make_repo(tmp_path / "repo")
    repo.write("a.py", "x = 1\n")
    repo.commit("base")
    repo.write("a.py", "x = eval(input())\n")
    repo.commit("head")
    diff = parse(repo.diff("HEAD~1", "HEAD"))
    with TrickleServer(interval=0.5) as server:
        config = LLMConfig(base_url=f"{server.url}/v1", model="m", timeout_s=1.0, max_attempts=1)
        reviewer = REVIEWERS.create("llm", config, sleep=lambda s: None)
        with pytest.raises(EndpointError) as info:
            reviewer.review(diff, ReviewContext())
    assert "sent no complete answer within the 2 s deadline once" in str(info.value)
    assert reviewer.counters.api_calls == 1


def test_requests_raise_plain_requests_errors_for_callers_that_do_not_know_the_policy():
    assert issubclass(http.DeadlineExceeded, requests.Timeout)
    assert issubclass(http.AmbiguousWrite, requests.RequestException)
