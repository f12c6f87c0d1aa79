"""The one chat-completions client (judge and translator): its retry policy against a real HTTP
server on 127.0.0.1."""

from __future__ import annotations

import email.utils
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vittle.analysis.chat_client import ChatClient, ChatFailure, RetryPolicy, retry_after


class _Server:
    """Answers each POST with the next scripted (status, headers) and then 200 with a reply."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.count = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                server.count += 1
                status, headers = server.script.pop(0) if server.script else (200, {})
                data = json.dumps({"choices": [{"message": {"content": "ok"}}]} if status == 200 else {"error": "x"}).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    served = _Server()
    yield served
    served.close()


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after("3") == 3.0 and retry_after("0.5") == 0.5 and retry_after(None) is None and retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after(date, now=1_000_000) == pytest.approx(30.0)
    assert retry_after(email.utils.formatdate(999_000, usegmt=True), now=1_000_000) == 0.0  # a date in the past: now


def test_transient_statuses_are_retried_with_backoff_retry_after_and_a_cap(server):
    sleeps: list[float] = []
    client = ChatClient(server.url, policy=RetryPolicy(retries=4, backoff_s=0.5, max_wait_s=10), sleep=sleeps.append)
    date = email.utils.formatdate(usegmt=True)  # "now": no wait
    server.script = [(429, {"Retry-After": "2"}), (503, {}), (408, {}), (429, {"Retry-After": "3600"})]
    assert client.complete({"x": 1})["choices"][0]["message"]["content"] == "ok"
    assert sleeps == [2.0, 1.0, 2.0, 10.0]  # told, backoff 0.5 * 2^1, 0.5 * 2^2, told but capped
    assert client.calls == 5 and server.count == 5
    server.script = [(502, {"Retry-After": date})]
    sleeps.clear()
    client.complete({})
    assert len(sleeps) == 1 and sleeps[0] <= 1.0
    client.close()


def test_a_final_status_stops_at_once_and_exhausted_retries_say_so(server):
    sleeps: list[float] = []
    client = ChatClient(server.url, policy=RetryPolicy(retries=2, backoff_s=0.01), sleep=sleeps.append)
    server.script = [(401, {})]
    with pytest.raises(ChatFailure, match="refused the request: HTTP 401") as err:
        client.complete({})
    assert err.value.final and err.value.status == 401 and sleeps == []
    server.script = [(500, {})] * 3
    with pytest.raises(ChatFailure, match="failed 3 times; last: HTTP 500") as err:
        client.complete({})
    assert not err.value.final and err.value.attempts == 3 and sleeps == [0.01, 0.02]
    client.close()


def test_the_translator_honours_retry_after_too(server, monkeypatch):
    """The translator had its own loop that ignored Retry-After; it now shares the judge's policy."""
    from vittle.analysis.perturb.openai_chat import OpenAIChatTranslator
    from vittle.analysis.perturb.translation_types import Language

    waits: list[float] = []
    monkeypatch.setattr("time.sleep", waits.append)
    server.script = [(429, {"Retry-After": "7"})]
    translator = OpenAIChatTranslator(server.url, "m", backoff_s=0.01)
    assert translator.translate("a cat", Language.GREEK) == "ok"
    assert waits == [7.0]
