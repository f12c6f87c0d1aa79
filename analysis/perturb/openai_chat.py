"""Translation through any OpenAI-compatible chat-completions API (OpenAI, Azure-style
proxies, vLLM, llama.cpp server, Ollama ...), as the paper did with GPT-4o."""

from __future__ import annotations

import logging
from typing import Any

from vittle.analysis.chat_client import ChatClient, ChatFailure, RetryPolicy, message_content  # httpx: only when a translation is requested

from .translation_types import TRANSLATOR_PROMPT, Language, TranslationError, Translator

logger = logging.getLogger(__name__)


class OpenAIChatTranslator(Translator):
    """POSTs `{base_url}/chat/completions` with a translator system prompt (through
    `vittle.analysis.chat_client`, the retry policy shared with the judge)."""

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

    def _chat(self) -> Any:
        if self._client is None:
            self._client = ChatClient(self.base_url, self.api_key, self.timeout_s, RetryPolicy(self.retries, self.backoff_s))
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
        language = Language(language)
        try:
            payload = self._chat().complete(self.request_body(text, language))
        except ChatFailure as err:
            failure = str(err).replace("could not connect", f"cannot reach {self.base_url}")
            raise TranslationError(f"translation into {language.display} failed: {failure}") from None
        content = message_content(payload)
        if content is None:
            raise TranslationError(f"unexpected response from {self.base_url}: {str(payload)[:300]}")
        if not content.strip():
            raise TranslationError(f"empty translation from {self.base_url}")
        return content.strip()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
