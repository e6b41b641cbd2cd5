"""The HTTP client the CLI uses to talk to a running ragkeep (``RAGKEEP_URL``, ``RAGKEEP_API_KEY``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from core.settings import get_settings

# A 429 (rate limit, pending-bytes limit) is waited out for at most this long in total.
MAX_BACKOFF_S = 300.0


class ApiError(Exception):
    """The server answered with an error status; ``str()`` is what the user should read."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


class Unreachable(Exception):
    """No answer from the server at all."""


class Server:
    """Calls the API with the configured key; waits out 429s as the server's ``Retry-After`` asks."""

    def __init__(self, url: str | None = None, key: str | None = None, timeout: float = 120.0) -> None:
        settings = get_settings()
        self.url = url or os.environ.get("RAGKEEP_URL") or f"http://127.0.0.1:{settings.api_port}"
        key = key or os.environ.get("RAGKEEP_API_KEY") or settings.admin_api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        self.sleep: Callable[[float], None] = time.sleep

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body of a successful response (``None`` for 204)."""
        waited = 0.0
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise Unreachable(f"cannot reach ragkeep at {self.url}: {exc}") from exc
            if response.status_code == 429 and waited < MAX_BACKOFF_S:
                delay = min(_retry_after(response), MAX_BACKOFF_S - waited)
                self.sleep(delay)
                waited += delay
                continue
            if response.status_code >= 400:
                raise _error(response)
            if response.status_code == 204 or not response.content:
                return None
            return response.json()

    def wait_job(self, job_id: str, on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll a job until it has succeeded or failed; ``on_poll`` sees every state read."""
        while True:
            job: dict[str, Any] = self.call("GET", f"/jobs/{job_id}")
            if on_poll is not None:
                on_poll(job)
            if job["status"] in ("succeeded", "failed"):
                return job
            self.sleep(0.5)


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(1.0, float(response.headers.get("retry-after", "5")))
    except ValueError:
        return 5.0


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        return ApiError(response.status_code, str(body.get("error", "")), str(body["detail"]))
    return ApiError(response.status_code, response.reason_phrase, response.text[:500])
