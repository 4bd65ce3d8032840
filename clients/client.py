"""Python clients for the helpline classifier: ``HelplineClient`` (sync) and ``AsyncHelplineClient``.

Both speak the same API, retry the same way (``clients.retry.RetryPolicy``) and
raise the same ``HelplineError``. ``classify_batch`` cuts any number of
narratives into batches the server accepts and returns the results in input
order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from urllib.parse import quote, urlencode

import httpx

from clients.calls import AsyncCallSession, CallSession
from clients.models import ClassifyResult, Health, Info, TaskStatus
from clients.retry import RetryPolicy, parse_retry_after

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "CHS_URL"
API_KEY_ENV = "CHS_API_KEY"
USER_AGENT = "helpline-serve-client/0.1"

# (retry number, seconds about to be waited, what failed: "503 overloaded" or "ConnectError")
RetryCallback = Callable[[int, float, str], None]


class HelplineError(Exception):
    """A request that failed for good: the server's error, or a transport failure after retries.

    ``status`` is the HTTP status, or None when no response came back (then
    ``code`` is "connection_error" or "timeout").
    """

    def __init__(self, status: Optional[int], code: str, message: str, request_id: Optional[str] = None,
                 retry_after: Optional[float] = None):
        super().__init__(f"{status if status is not None else '-'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after

    def to_dict(self) -> dict:
        return {"status": self.status, "code": self.code, "message": self.message, "request_id": self.request_id}

    @classmethod
    def from_response(cls, response: httpx.Response) -> "HelplineError":
        request_id = response.headers.get("x-request-id")
        code, message = f"http_{response.status_code}", response.reason_phrase or "error"
        try:
            body = response.json()
        except ValueError:
            body = None
            text = response.text.strip()
            if text:
                message = text[:300]
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            code = str(err.get("code", code))
            message = str(err.get("message", message))
            request_id = err.get("request_id") or request_id
        return cls(response.status_code, code, message, request_id,
                   parse_retry_after(response.headers.get("retry-after")))

    @classmethod
    def from_transport(cls, exc: httpx.TransportError) -> "HelplineError":
        code = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
        return cls(None, code, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


@dataclass
class ClientStats:
    """Counters over the client's life. ``retries`` counts every re-sent request."""

    requests: int = 0  # HTTP attempts, retries included
    retries: int = 0
    failures: int = 0  # calls that raised HelplineError
    splits: int = 0  # batches halved after a 413
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "retries": self.retries, "failures": self.failures, "splits": self.splits}


def _with_query(path: str, **params: Any) -> str:
    given = {k: v for k, v in params.items() if v is not None}
    return f"{path}?{urlencode(given)}" if given else path


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class _Base:
    def __init__(self, url: Optional[str], api_key: Optional[str], timeout: Union[float, httpx.Timeout],
                 max_retries: Optional[int], retry: Optional[RetryPolicy], max_batch_narratives: Optional[int],
                 on_retry: Optional[RetryCallback]):
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._api_key = key or None
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = dataclasses.replace(policy, max_retries=max_retries)
        self.retry = policy
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout, connect=min(10.0, timeout))
        self.max_batch_narratives = max_batch_narratives
        self.on_retry = on_retry
        self.stats = ClientStats()

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(url={self.url!r}, api_key={'set' if self._api_key else 'none'})"

    def _headers(self) -> dict:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    @staticmethod
    def _classify_body(narrative: str, include_confidence: bool, include_chunks: bool) -> dict:
        return {"narrative": narrative, "include_confidence": include_confidence, "include_chunks": include_chunks}

    @staticmethod
    def _batch_body(narratives: Sequence[str], include_confidence: bool, include_chunks: bool) -> dict:
        return {"narratives": list(narratives), "include_confidence": include_confidence,
                "include_chunks": include_chunks}

    @staticmethod
    def _submit_body(narrative: str, call_id: Optional[str], include_confidence: bool, include_chunks: bool) -> dict:
        body = {"narrative": narrative, "include_confidence": include_confidence, "include_chunks": include_chunks}
        if call_id is not None:
            body["call_id"] = call_id
        return body

    @staticmethod
    def _idempotency(key: Optional[str], call_id: Optional[str]) -> Optional[dict]:
        """A key of its own for every submit without one, so the client's retries never queue a case twice."""
        if key is None and call_id is None:
            key = uuid.uuid4().hex
        return {"Idempotency-Key": key} if key else None

    @staticmethod
    def _task_ids(response: httpx.Response) -> list[str]:
        body = response.json()
        return [t["task_id"] for t in body["tasks"]] if "tasks" in body else [body["task_id"]]

    @staticmethod
    def _request_headers(request_id: Optional[str]) -> Optional[dict]:
        return {"X-Request-ID": request_id} if request_id else None

    def _decide(self, retry: int, response: Optional[httpx.Response], exc: Optional[BaseException]):
        """(delay or None, the error to raise when not retrying, a short reason)."""
        if exc is not None:
            return self.retry.next_delay(retry, exc=exc), HelplineError.from_transport(exc), type(exc).__name__
        err = HelplineError.from_response(response)
        return (self.retry.next_delay(retry, status=response.status_code, retry_after=err.retry_after), err,
                f"{err.status} {err.code}")

    @staticmethod
    def error_of(response: httpx.Response) -> "HelplineError":
        """The error an answer of 400 or more stands for."""
        return HelplineError.from_response(response)

    def _note_retry(self, retry: int, delay: float, reason: str) -> None:
        self.stats.add("retries")
        if self.on_retry is not None:
            self.on_retry(retry, delay, reason)

    @staticmethod
    def _batch_results(response: httpx.Response) -> list[ClassifyResult]:
        body = response.json()
        rid = response.headers.get("x-request-id")
        model, took = body.get("model"), body.get("processing_time_seconds")
        return [ClassifyResult.from_dict(item, model=model, processing_time_seconds=took, request_id=rid)
                for item in body.get("results", [])]

    @staticmethod
    def _health(response: Optional[httpx.Response]) -> Health:
        if response is None:
            return Health(ok=False, status="unreachable", http_status=0)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            return Health(ok=True, status=str(body.get("status", "ok")), deployments=body.get("deployments") or {},
                          http_status=200)
        err = body.get("error") if isinstance(body, dict) else None
        status = err.get("code", "unavailable") if isinstance(err, dict) else "unavailable"
        return Health(ok=False, status=str(status), http_status=response.status_code)


class HelplineClient(_Base):
    """Synchronous client.

    >>> with HelplineClient("http://127.0.0.1:8000") as client:
    ...     result = client.classify("A 12 year old girl reports that ...")
    ...     result.main_category.label, result.routing.queue

    ``api_key`` defaults to ``$CHS_API_KEY``; ``url`` to ``$CHS_URL`` or
    http://127.0.0.1:8000. ``httpx_options`` go to ``httpx.Client`` as they
    are (``transport``, ``event_hooks``, ``verify``...).
    """

    def __init__(self, url: Optional[str] = None, *, api_key: Optional[str] = None,
                 timeout: Union[float, httpx.Timeout] = 60.0, max_retries: Optional[int] = None,
                 retry: Optional[RetryPolicy] = None, max_batch_narratives: Optional[int] = None,
                 on_retry: Optional[RetryCallback] = None, httpx_options: Optional[dict] = None):
        super().__init__(url, api_key, timeout, max_retries, retry, max_batch_narratives, on_retry)
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout, headers=self._headers(),
                                  **(httpx_options or {}))

    def __enter__(self) -> "HelplineClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, json: Any = None, headers: Optional[dict] = None) -> httpx.Response:
        retry = 0
        while True:
            self.stats.add("requests")
            response, exc = None, None
            try:
                response = self._http.request(method, path, json=json, headers=headers)
            except httpx.TransportError as e:
                exc = e
            if exc is None and response.status_code < 400:
                return response
            delay, err, reason = self._decide(retry, response, exc)
            if delay is None:
                self.stats.add("failures")
                raise err from exc
            self._note_retry(retry, delay, reason)
            time.sleep(delay)
            retry += 1

    def classify(self, narrative: str, include_confidence: bool = True, include_chunks: bool = False, *,
                 request_id: Optional[str] = None) -> ClassifyResult:
        r = self._send("POST", "/classify", self._classify_body(narrative, include_confidence, include_chunks),
                       self._request_headers(request_id))
        return ClassifyResult.from_dict(r.json(), request_id=r.headers.get("x-request-id"))

    def classify_batch(self, narratives: Iterable[str], include_confidence: bool = True,
                       include_chunks: bool = False, *, batch_size: Optional[int] = None) -> list[ClassifyResult]:
        """Classify any number of narratives, in server-sized batches; results in input order."""
        items = list(narratives)
        if not items:
            return []
        size = batch_size or self.batch_limit()
        out: list[ClassifyResult] = []
        for chunk in _chunks(items, size):
            out.extend(self._batch(chunk, include_confidence, include_chunks))
        return out

    def _batch(self, chunk: Sequence[str], include_confidence: bool, include_chunks: bool) -> list[ClassifyResult]:
        try:
            r = self._send("POST", "/classify/batch", self._batch_body(chunk, include_confidence, include_chunks))
        except HelplineError as err:
            # Over the server's window or body limit: halve and try each half.
            if err.status == 413 and len(chunk) > 1:
                self.stats.add("splits")
                half = len(chunk) // 2
                return (self._batch(chunk[:half], include_confidence, include_chunks)
                        + self._batch(chunk[half:], include_confidence, include_chunks))
            raise
        return self._batch_results(r)

    def batch_limit(self) -> int:
        """Narratives per batch request: the constructor's value, else the server's (read from /info once)."""
        if self.max_batch_narratives is None:
            self.max_batch_narratives = self.info().limits.max_batch_narratives or 32
        return self.max_batch_narratives

    # -- the durable intake: submit now, collect later ------------------------------------------

    def submit(self, narrative: str, *, call_id: Optional[str] = None, idempotency_key: Optional[str] = None,
               include_confidence: bool = True, include_chunks: bool = False) -> str:
        """Queue one case (POST /tasks/classify); its task id. The same key or call id gives the same task,
        so a retried submit never makes a second one."""
        headers = self._idempotency(idempotency_key, call_id)
        r = self._send("POST", "/tasks/classify",
                       self._submit_body(narrative, call_id, include_confidence, include_chunks), headers)
        return self._task_ids(r)[0]

    def submit_batch(self, narratives: Sequence[str], *, call_ids: Optional[Sequence[str]] = None,
                     batch_size: Optional[int] = None) -> list[str]:
        """Queue many cases, in server-sized batches; task ids in input order."""
        items, ids = list(narratives), []
        size = batch_size or self.batch_limit()
        for start in range(0, len(items), size):
            body: dict = {"narratives": items[start:start + size]}
            if call_ids is not None:
                body["call_ids"] = list(call_ids[start:start + size])
            ids += self._task_ids(self._send("POST", "/tasks/classify/batch", body, self._idempotency(None, None)))
        return ids

    def task(self, task_id: str) -> TaskStatus:
        return TaskStatus.from_dict(self._send("GET", f"/tasks/{task_id}").json())

    def wait(self, task_id: str, *, timeout: float = 600.0, poll_s: float = 1.0) -> TaskStatus:
        """Poll a task until it has succeeded or failed; TimeoutError past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.task(task_id)
            if status.done:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} is still {status.status} after {timeout} s")
            time.sleep(poll_s)

    def info(self) -> Info:
        return Info.from_dict(self._send("GET", "/info").json())

    def case(self, ref: str) -> dict:
        """The case record for a case id, call id or request id (``GET /cases/{id}``)."""
        return self._send("GET", f"/cases/{quote(ref, safe='')}").json()["case"]

    def feedback(self, case_id: str, corrections: Optional[dict] = None, *, rating: Optional[int] = None,
                 reason: Optional[str] = None, reviewer: Optional[str] = None,
                 narrative: Optional[str] = None) -> dict:
        """Send a counsellor's corrections for a case (``POST /feedback``); the stored feedback."""
        body = {"case_id": case_id, "corrections": corrections or {}, "rating": rating, "reason": reason,
                "reviewer": reviewer, "narrative": narrative}
        return self._send("POST", "/feedback", {k: v for k, v in body.items() if v is not None}).json()["feedback"]

    def feedback_stats(self, days: int = 30, model: Optional[str] = None) -> dict:
        return self._send("GET", _with_query("/feedback/stats", days=days, model=model)).json()

    def feedback_export(self, since: str, model: Optional[str] = None) -> dict:
        """Corrections with narratives as training examples since a day (YYYY-MM-DD)."""
        return self._send("GET", _with_query("/feedback/export", since=since, model=model)).json()

    def audit(self, **filters: Any) -> dict:
        """One page of the audit trail (admin): ``GET /audit`` with its filters (``from``/``to`` as
        ``since``/``until``, ``cursor`` for the next page); ``{"events", "next_cursor"}``."""
        renamed = {"from": filters.pop("since", None), "to": filters.pop("until", None), **filters}
        return self._send("GET", _with_query("/audit", **renamed)).json()
    def call(self, call_id: str) -> CallSession:
        """A live call's session: ``send(text)`` each new piece of its transcript, ``end()``, ``events()``."""
        return CallSession(self, call_id)

    def health(self) -> Health:
        """Never raises: a 503 or an unreachable server is ``Health(ok=False)``."""
        self.stats.add("requests")
        try:
            return self._health(self._http.get("/health"))
        except httpx.TransportError:
            return self._health(None)


class AsyncHelplineClient(_Base):
    """The asyncio client: the same calls, awaited.

    ``classify_batch(..., concurrency=N)`` keeps up to N batch requests in flight.
    """

    def __init__(self, url: Optional[str] = None, *, api_key: Optional[str] = None,
                 timeout: Union[float, httpx.Timeout] = 60.0, max_retries: Optional[int] = None,
                 retry: Optional[RetryPolicy] = None, max_batch_narratives: Optional[int] = None,
                 on_retry: Optional[RetryCallback] = None, httpx_options: Optional[dict] = None):
        super().__init__(url, api_key, timeout, max_retries, retry, max_batch_narratives, on_retry)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self.timeout, headers=self._headers(),
                                       **(httpx_options or {}))

    async def __aenter__(self) -> "AsyncHelplineClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, json: Any = None,
                    headers: Optional[dict] = None) -> httpx.Response:
        retry = 0
        while True:
            self.stats.add("requests")
            response, exc = None, None
            try:
                response = await self._http.request(method, path, json=json, headers=headers)
            except httpx.TransportError as e:
                exc = e
            if exc is None and response.status_code < 400:
                return response
            delay, err, reason = self._decide(retry, response, exc)
            if delay is None:
                self.stats.add("failures")
                raise err from exc
            self._note_retry(retry, delay, reason)
            await asyncio.sleep(delay)
            retry += 1

    async def classify(self, narrative: str, include_confidence: bool = True, include_chunks: bool = False, *,
                       request_id: Optional[str] = None) -> ClassifyResult:
        r = await self._send("POST", "/classify", self._classify_body(narrative, include_confidence, include_chunks),
                             self._request_headers(request_id))
        return ClassifyResult.from_dict(r.json(), request_id=r.headers.get("x-request-id"))

    async def classify_batch(self, narratives: Iterable[str], include_confidence: bool = True,
                             include_chunks: bool = False, *, batch_size: Optional[int] = None,
                             concurrency: int = 1) -> list[ClassifyResult]:
        """Classify any number of narratives, in server-sized batches; results in input order."""
        items = list(narratives)
        if not items:
            return []
        size = batch_size or await self.batch_limit()
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(chunk):
            async with gate:
                return await self._batch(chunk, include_confidence, include_chunks)

        parts = await asyncio.gather(*(one(c) for c in _chunks(items, size)))
        return [r for part in parts for r in part]

    async def _batch(self, chunk: Sequence[str], include_confidence: bool,
                     include_chunks: bool) -> list[ClassifyResult]:
        try:
            r = await self._send("POST", "/classify/batch", self._batch_body(chunk, include_confidence, include_chunks))
        except HelplineError as err:
            if err.status == 413 and len(chunk) > 1:
                self.stats.add("splits")
                half = len(chunk) // 2
                return (await self._batch(chunk[:half], include_confidence, include_chunks)
                        + await self._batch(chunk[half:], include_confidence, include_chunks))
            raise
        return self._batch_results(r)

    async def batch_limit(self) -> int:
        if self.max_batch_narratives is None:
            self.max_batch_narratives = (await self.info()).limits.max_batch_narratives or 32
        return self.max_batch_narratives

    async def submit(self, narrative: str, *, call_id: Optional[str] = None, idempotency_key: Optional[str] = None,
                     include_confidence: bool = True, include_chunks: bool = False) -> str:
        """Queue one case (POST /tasks/classify); its task id."""
        headers = self._idempotency(idempotency_key, call_id)
        r = await self._send("POST", "/tasks/classify",
                             self._submit_body(narrative, call_id, include_confidence, include_chunks), headers)
        return self._task_ids(r)[0]

    async def submit_batch(self, narratives: Sequence[str], *, call_ids: Optional[Sequence[str]] = None,
                           batch_size: Optional[int] = None) -> list[str]:
        """Queue many cases, in server-sized batches; task ids in input order."""
        items, ids = list(narratives), []
        size = batch_size or await self.batch_limit()
        for start in range(0, len(items), size):
            body: dict = {"narratives": items[start:start + size]}
            if call_ids is not None:
                body["call_ids"] = list(call_ids[start:start + size])
            ids += self._task_ids(await self._send("POST", "/tasks/classify/batch", body,
                                                   self._idempotency(None, None)))
        return ids

    async def task(self, task_id: str) -> TaskStatus:
        return TaskStatus.from_dict((await self._send("GET", f"/tasks/{task_id}")).json())

    async def wait(self, task_id: str, *, timeout: float = 600.0, poll_s: float = 1.0) -> TaskStatus:
        """Poll a task until it has succeeded or failed; TimeoutError past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.task(task_id)
            if status.done:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} is still {status.status} after {timeout} s")
            await asyncio.sleep(poll_s)

    async def info(self) -> Info:
        return Info.from_dict((await self._send("GET", "/info")).json())

    def call(self, call_id: str) -> AsyncCallSession:
        """A live call's session: ``await send(text)``, ``await end()``, ``async for ... in events()``."""
        return AsyncCallSession(self, call_id)

    async def health(self) -> Health:
        """Never raises: a 503 or an unreachable server is ``Health(ok=False)``."""
        self.stats.add("requests")
        try:
            return self._health(await self._http.get("/health"))
        except httpx.TransportError:
            return self._health(None)
