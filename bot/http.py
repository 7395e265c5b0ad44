"""One HTTP policy for every remote Sieve talks to: GitHub, GitLab, the LLM reviewer, the OpenAI rater, the teacher.

Deciding what an answer means is pure code (:func:`decide`, after gidgethub's ``sansio``): given a status, its
headers, the attempt number and the clock, it says whether to retry, after how long, and whether a write may
have landed. Everything with I/O is thin and lives below it:

- :func:`run` — the one retry loop; the caller says how its SDK's exceptions read (``classify``) and which
  Sieve error to raise when it gives up (``fail``). ``landed`` lets a write whose result is unknown (timeout,
  reset, 5xx) check whether it took effect before it is sent again.
- :class:`Counters` — requests, writes, retries and waits; part of the Host protocol.
- :class:`Pacer` — a pause between writes (the hosts' content-creation limits).
- :class:`Deadline` — a whole-request deadline. Socket timeouts bound each read, so a server that trickles one
  byte every two seconds would never trip a three-second timeout; the deadline shuts the request's sockets down
  when it passes, and the request ends with :class:`DeadlineExceeded`.
- :class:`PolicyAdapter` (requests, for PyGithub and python-gitlab) and :func:`httpx_client` (for the openai SDK)
  put counting, pacing and the deadline into the transports.

One cap for every wait (``max_wait``): a server asking for longer makes the call fail at once with a
:class:`~bot.errors.RateLimitError` instead of a silent sleep.
"""

from __future__ import annotations

import email.utils
import importlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

T = TypeVar("T")
#: The one cap on any wait, for every client unless its configuration says otherwise.
MAX_WAIT = 900.0
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


# ---------------------------------------------------------------------------------------------- the pure part
@dataclass(frozen=True)
class Policy:
    """How Sieve treats one endpoint. Every client builds one from its own settings; no global state."""

    retries: int = 4  # extra attempts after the first
    backoff: float = 1.0  # first pause after a 5xx, timeout or dropped connection; doubles each time
    limit_backoff: float | None = None  # first pause for a rate limit that names no time (None: backoff)
    max_wait: float = MAX_WAIT  # the one cap on any wait: back-off stops growing there; a server asking for more → give up
    write_pause: float = 0.0  # seconds kept between two writes
    timeout: float = 30.0  # per socket operation
    deadline: float | None = None  # whole request, headers and body (None: twice the timeout)

    @property
    def request_deadline(self) -> float:
        return self.deadline if self.deadline is not None else 2.0 * self.timeout


@dataclass(frozen=True)
class Answer:
    """What came back from one attempt: a status and headers, or a transport failure (no status)."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = ""
    failure: str | None = None  # "timeout" | "deadline" | "connection" when no status came back


@dataclass(frozen=True)
class Verdict:
    kind: str  # ok | limited | server | timeout | connection | refused
    retry: bool
    wait: float = 0.0
    ambiguous: bool = False  # a write may have landed although it failed
    too_long: bool = False  # the server asked for a wait past max_wait


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``; None if absent."""
    lower = {k.lower(): v for k, v in headers.items()}
    millis = lower.get("retry-after-ms", "").strip()
    try:
        if millis:
            return max(0.0, float(millis) / 1000.0)
    except ValueError:
        pass
    value = lower.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def limit_reset(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until a spent rate limit resets: GitHub's ``x-ratelimit-reset`` (when remaining is 0), GitLab's
    ``RateLimit-Reset``; both are epoch seconds."""
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    github = lower.get("x-ratelimit-reset", "")
    if lower.get("x-ratelimit-remaining") == "0" and github.isdigit():
        return max(1.0, int(github) - now + 1.0)
    gitlab = lower.get("ratelimit-reset", "")
    if gitlab.isdigit():
        return max(0.0, int(gitlab) - now)
    return None


def is_rate_limited(answer: Answer) -> bool:
    """429, or a 403 that GitHub uses for its primary and secondary limits."""
    if answer.status == 429:
        return True
    if answer.status != 403:
        return False
    lower = {k.lower(): v for k, v in answer.headers.items()}
    return ("rate limit" in answer.message.lower() or lower.get("x-ratelimit-remaining") == "0"
            or "retry-after" in lower)


def decide(answer: Answer, attempt: int, policy: Policy, now: float) -> Verdict:
    """What one answer means. ``attempt`` counts from 0; ``now`` is epoch seconds (for reset headers)."""
    backoff = min(policy.max_wait, policy.backoff * 2 ** attempt)
    if answer.status is None:
        kind = "connection" if answer.failure == "connection" else "timeout"
        return Verdict(kind, attempt < policy.retries, backoff, ambiguous=True)
    if answer.status < 400:
        return Verdict("ok", False)
    if is_rate_limited(answer):
        asked = retry_after(answer.headers, now)
        if asked is None:
            asked = limit_reset(answer.headers, now)
        if asked is None:
            asked = (policy.limit_backoff if policy.limit_backoff is not None else policy.backoff) * 2 ** attempt
        too_long = asked > policy.max_wait
        return Verdict("limited", attempt < policy.retries and not too_long, asked, too_long=too_long)
    if answer.status in RETRY_STATUSES:
        asked = retry_after(answer.headers, now)
        wait = backoff if asked is None else asked
        too_long = wait > policy.max_wait
        return Verdict("server", attempt < policy.retries and not too_long, wait, ambiguous=True, too_long=too_long)
    return Verdict("refused", False)


# ---------------------------------------------------------------------------------------------- the loop
@dataclass
class Counters:
    """Every HTTP attempt a client made (each retry counts), its writes, and the waits the policy chose."""

    api_calls: int = 0
    writes: int = 0
    retries: int = 0
    waits: list[float] = field(default_factory=list)

    def record(self, method: str | None) -> None:
        self.api_calls += 1
        if (method or "GET").upper() not in ("GET", "HEAD"):
            self.writes += 1

    def waited(self, seconds: float) -> None:
        self.retries += 1
        self.waits.append(seconds)


def run(call: Callable[[], T], policy: Policy, *, classify: Callable[[Exception], Answer | None],
        fail: Callable[[Answer, Verdict, int], Exception], sleep: Callable[[float], None] = time.sleep,
        counters: Counters | None = None, landed: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time) -> T | None:
    """Call ``call`` under the policy. ``classify`` reads an SDK exception (None: not an HTTP failure, re-raised);
    ``fail(answer, verdict, attempts)`` builds the error raised when the policy stops. Returns None only when
    ``landed`` says that a failed write took effect after all."""
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:  # classify decides; anything it does not know is re-raised
            answer = classify(exc)
            if answer is None:
                raise
        verdict = decide(answer, attempt, policy, clock())
        if not verdict.retry:
            raise fail(answer, verdict, attempt + 1)
        if counters is not None:
            counters.waited(verdict.wait)
        sleep(verdict.wait)
        if verdict.ambiguous and landed is not None and landed():
            return None
        attempt += 1


class Pacer:
    """Keeps ``pause`` seconds between the end of one write and the start of the next."""

    def __init__(self, pause: float, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pause, self.sleep, self.clock = pause, sleep, clock
        self._last = float("-inf")

    def before(self) -> None:
        gap = self.pause - (self.clock() - self._last)
        if self.pause > 0 and gap > 0:
            self.sleep(gap)

    def after(self) -> None:
        self._last = self.clock()


# ---------------------------------------------------------------------------------------------- the deadline
class DeadlineExceeded(requests.Timeout):
    """A request ran past its overall deadline (its sockets were shut down)."""


_current = threading.local()


class Deadline:
    """``with Deadline(seconds):`` — sockets registered in this thread meanwhile are shut down when time is up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Self:
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.deadline = self._outer

    def watch(self, sock: Any) -> None:
        with self._lock:
            if self.expired:
                _shut(sock)
            elif sock is not None and sock not in self._sockets:
                self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass


def watch_socket(sock: Any) -> None:
    """Put ``sock`` under the deadline of the request running in this thread, if any."""
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _WatchedHTTP(HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        watch_socket(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPS(HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        watch_socket(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


# ---------------------------------------------------------------------------------------------- requests
class AmbiguousWrite(requests.RequestException):
    """A non-idempotent write failed in a way that may have landed; the caller checks before sending it again."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        super().__init__(answer.message or f"HTTP {answer.status}")


class PolicyAdapter(HTTPAdapter):
    """A requests transport under the policy: counts every attempt, paces writes, holds each request (headers
    and body) to the deadline. With ``retry=True`` it also retries what :func:`decide` says may be retried,
    except a POST whose result is unknown: that is raised as :class:`AmbiguousWrite` for the caller to check."""

    def __init__(self, policy: Policy, counters: Counters, *, sleep: Callable[[float], None] = time.sleep,
                 retry: bool = False) -> None:
        super().__init__(max_retries=0)
        self.policy, self.counters, self.sleep, self.retry = policy, counters, sleep, retry
        self.pacer = Pacer(policy.write_pause, sleep)
        self.last_answer: Answer | None = None

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedHTTPSPool}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        attempt = 0
        while True:
            answer, response = self._attempt(request, kwargs)
            verdict = decide(answer, attempt, self.policy, time.time())
            if response is not None and (verdict.kind in ("ok", "refused") or not self.retry):
                return response
            if self.retry and verdict.ambiguous and request.method == "POST":
                raise AmbiguousWrite(answer)
            if not self.retry or not verdict.retry:
                raise _failure(answer, verdict, attempt + 1)
            self.counters.waited(verdict.wait)
            self.sleep(verdict.wait)
            attempt += 1

    def _attempt(self, request: requests.PreparedRequest, kwargs: dict[str, Any]
                 ) -> tuple[Answer, requests.Response | None]:
        write = (request.method or "GET").upper() not in ("GET", "HEAD")
        if write:
            self.pacer.before()
        self.counters.record(request.method)
        guard = Deadline(self.policy.request_deadline)
        try:
            with guard:
                response = super().send(request, **kwargs)
                if not kwargs.get("stream"):
                    _ = response.content  # the body is read under the deadline too
        except requests.RequestException as exc:
            if guard.expired:
                return Answer(failure="deadline", message=f"no complete answer within the "
                              f"{guard.seconds:g} s deadline"), None
            kind = "timeout" if isinstance(exc, requests.Timeout) else "connection"
            return Answer(failure=kind, message=type(exc).__name__), None
        finally:
            if write:
                self.pacer.after()
        return Answer(response.status_code, response.headers, response.reason or ""), response


def _failure(answer: Answer, verdict: Verdict, attempts: int) -> requests.RequestException:
    """A transport failure the adapter gives up on, as a requests exception the host maps to its errors."""
    if answer.failure == "deadline":
        return DeadlineExceeded(f"{answer.message} (after {attempts} attempt(s))")
    if answer.failure is not None:
        return (requests.Timeout if answer.failure == "timeout" else requests.ConnectionError)(
            f"{answer.message} after {attempts} attempt(s)")
    return GaveUpStatus(answer, attempts)


class GaveUpStatus(requests.RequestException):
    """The adapter's retry budget is spent on a retryable status (429, 5xx)."""

    def __init__(self, answer: Answer, attempts: int) -> None:
        self.status, self.answer = answer.status, answer
        super().__init__(f"HTTP {answer.status} after {attempts} attempt(s)")


def requests_session(policy: Policy, counters: Counters, *, sleep: Callable[[float], None] = time.sleep,
                     retry: bool = False) -> requests.Session:
    session = requests.Session()
    mount(session, policy, counters, sleep=sleep, retry=retry)
    return session


def mount(session: requests.Session, policy: Policy, counters: Counters, *,
          sleep: Callable[[float], None] = time.sleep, retry: bool = False) -> PolicyAdapter:
    adapter = PolicyAdapter(policy, counters, sleep=sleep, retry=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return adapter


# ---------------------------------------------------------------------------------------------- httpx (openai SDK)
def httpx_client(client_class: type, policy: Policy, counters: Counters | None = None) -> Any:
    """An httpx client of ``client_class`` (the SDK's own, e.g. ``openai.DefaultHttpxClient``) whose transport
    counts requests and holds each one to the deadline. Keep-alive is off so that every request's socket is
    seen when it connects (a trickling server can stall the headers as well as the body)."""
    httpx = importlib.import_module(next(c.__module__ for c in client_class.__mro__
                                         if c.__name__ == "Client").split(".")[0])
    inner = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))

    class Transport(httpx.BaseTransport):
        def handle_request(self, request: Any) -> Any:
            if counters is not None:
                counters.record(request.method)
            guard = Deadline(policy.request_deadline)
            guard.__enter__()
            request.extensions = {**request.extensions, "trace": _tracer(guard)}
            try:
                response = inner.handle_request(request)
                response.read()  # the body, under the deadline
            except httpx.TransportError:
                if guard.expired:
                    raise httpx.ReadTimeout(f"no complete answer within the {guard.seconds:g} s deadline",
                                            request=request) from None
                raise
            finally:
                guard.__exit__()
            return response

        def close(self) -> None:
            inner.close()

    return client_class(transport=Transport(), timeout=policy.timeout)


def _tracer(guard: Deadline) -> Callable[[str, dict[str, Any]], None]:
    def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith(("connect_tcp.complete", "start_tls.complete")):
            stream = info.get("return_value")
            guard.watch(stream.get_extra_info("socket") if stream is not None else None)
    return trace
