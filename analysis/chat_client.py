"""One HTTP client for OpenAI-compatible chat-completions APIs, with the retry policy every
caller shares: the LLaVA-Bench judge (`vittle.analysis.evaluate.judge`) and the translator
(`vittle.analysis.perturb.openai_chat`).

A request is tried again after a timeout, a connection error, or an answer of 408, 409, 429 or
5xx; the wait doubles from `backoff_s` (capped at `max_wait_s`) unless the server said how long
to wait (Retry-After, in seconds or as an HTTP date). Any other status is final at once.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Statuses worth another try; other 5xx are retried too."""


class ChatFailure(RuntimeError):
    """The request failed for good: `final` (a status that retrying will not change) or after every retry."""

    def __init__(self, message: str, status: int | None = None, body: str = "", attempts: int = 0, final: bool = False):
        super().__init__(message)
        self.status, self.body, self.attempts, self.final = status, body, attempts, final


@dataclass
class RetryPolicy:
    retries: int = 3
    """Further attempts after the first."""
    backoff_s: float = 1.0
    """Wait before the first retry, doubled for each further one."""
    max_wait_s: float = 60.0
    """Longest single wait (a longer Retry-After is cut to this)."""

    def wait(self, attempt: int, told: float | None) -> float:
        """Seconds before retry number `attempt` (1-based); `told`: the server's Retry-After."""
        base = told if told is not None else self.backoff_s * 2 ** (attempt - 1)
        return max(0.0, min(base, self.max_wait_s))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ChatClient:
    """POSTs `{base_url}/chat/completions` and returns the parsed JSON of a 200 answer."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 60.0, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None):
        import httpx  # heavy: the analysis extra; imported only when a client is made

        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.policy = policy or RetryPolicy()
        self._sleep = sleep or (lambda seconds: time.sleep(seconds))  # looked up at each call (tests patch time.sleep)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url + "/", headers=headers, timeout=timeout_s)
        self.calls = 0

    def close(self) -> None:
        self._http.close()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON of the first 200 answer; ChatFailure when a status is final or every try failed."""
        import httpx  # heavy

        problem, told = "", None
        attempts = self.policy.retries + 1
        for attempt in range(attempts):
            if attempt:
                delay = self.policy.wait(attempt, told)
                logger.warning("%s: %s; retrying in %.1f s", self.base_url, problem, delay)
                self._sleep(delay)
                told = None
            self.calls += 1
            try:
                response = self._http.post("chat/completions", json=body)
            except httpx.TimeoutException:
                problem = f"no reply within {self.timeout_s:g} s"
                continue
            except httpx.TransportError as err:
                problem = f"could not connect ({type(err).__name__}: {err})"
                continue
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    raise ChatFailure(f"{self.base_url} sent a reply that is not JSON: {response.text[:300]}", 200,
                                      response.text[:300], attempt + 1, final=True) from None
            problem = f"HTTP {response.status_code}"
            if response.status_code not in RETRY_STATUS and response.status_code < 500:
                raise ChatFailure(f"{self.base_url} refused the request: HTTP {response.status_code}: {response.text[:300]}",
                                  response.status_code, response.text[:300], attempt + 1, final=True)
            told = retry_after(response.headers.get("retry-after"))
        raise ChatFailure(f"{self.base_url} failed {attempts} times; last: {problem}", attempts=attempts)


def message_content(payload: Any) -> str | None:
    """choices[0].message.content of a chat-completions reply, or None if it has none."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None
