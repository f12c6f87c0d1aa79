"""Translation through any OpenAI-compatible chat-completions API (OpenAI, Azure-style
proxies, vLLM, llama.cpp server, Ollama ...), as the paper did with GPT-4o."""

from __future__ import annotations

import logging
import time
from typing import Any

from .translation_types import TRANSLATOR_PROMPT, Language, TranslationError, Translator

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIChatTranslator(Translator):
    """POSTs `{base_url}/chat/completions` with a translator system prompt."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0,
                 retries: int = 3, backoff_s: float = 1.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._client: Any = None

    @property
    def backend_id(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def _http(self) -> Any:
        if self._client is None:
            import httpx  # only when a translation is actually requested

            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(base_url=self.base_url + "/", headers=headers, timeout=self.timeout_s)
        return self._client

    def request_body(self, text: str, language: Language) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": 0,  # translations should not vary between reruns
            "messages": [
                {"role": "system", "content": TRANSLATOR_PROMPT.format(language=language.display)},
                {"role": "user", "content": text},
            ],
        }

    def translate(self, text: str, language: Language) -> str:
        import httpx

        language = Language(language)
        body = self.request_body(text, language)
        for attempt in range(self.retries + 1):
            try:
                response = self._http().post("chat/completions", json=body)
            except httpx.TransportError as err:
                failure = f"cannot reach {self.base_url}: {err}"
            else:
                if response.status_code == 200:
                    return _content(response.json(), self.base_url)
                failure = f"{self.base_url} answered HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in RETRY_STATUS:
                    break
            if attempt < self.retries:
                delay = self.backoff_s * 2**attempt
                logger.warning("%s; retrying in %.0f s", failure, delay)
                time.sleep(delay)
        raise TranslationError(f"translation into {language.display} failed: {failure}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _content(payload: dict[str, Any], where: str) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise TranslationError(f"unexpected response from {where}: {str(payload)[:300]}") from None
    if not isinstance(content, str) or not content.strip():
        raise TranslationError(f"empty translation from {where}")
    return content.strip()
