"""An on-disk translation cache keyed by text, language and backend.

One small JSON file per entry, written atomically, so parallel workers and interrupted
runs share it safely, and a benchmark rerun costs no API calls and gives the same text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from vittle.files import write_text_atomic

from .translation_types import Language, Translator

logger = logging.getLogger(__name__)


class TranslationCache:
    """Maps (backend id, language, text) to a stored translation."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, backend_id: str, language: Language, text: str) -> Path:
        digest = hashlib.sha256(f"{backend_id}\x1f{language.value}\x1f{text}".encode()).hexdigest()
        folder = re.sub(r"[^A-Za-z0-9._-]+", "_", backend_id)[:60] + "-" + digest[:8]
        # The backend folder name is readable; the digest in the file name decides.
        return self.root / folder / language.value / digest[:2] / f"{digest}.json"

    def get(self, backend_id: str, language: Language, text: str) -> str | None:
        path = self.path(backend_id, language, text)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            logger.warning("ignoring unreadable cache entry %s: %s", path, err)
            return None
        if entry.get("text") != text or entry.get("backend") != backend_id:
            return None  # a digest collision would be astonishing, but costs nothing to check
        return entry["translation"]

    def put(self, backend_id: str, language: Language, text: str, translation: str) -> None:
        entry = {"backend": backend_id, "language": language.value, "text": text, "translation": translation}
        write_text_atomic(self.path(backend_id, language, text), json.dumps(entry, ensure_ascii=False, indent=1))


class CachedTranslator(Translator):
    """Any backend behind a `TranslationCache`."""

    def __init__(self, backend: Translator, cache_dir: Path) -> None:
        self.backend = backend
        self.cache = TranslationCache(cache_dir)
        self.is_gloss = backend.is_gloss

    @property
    def backend_id(self) -> str:
        return self.backend.backend_id

    def label(self, language: Language) -> str:
        return self.backend.label(language)

    def translate(self, text: str, language: Language) -> str:
        language = Language(language)
        cached = self.cache.get(self.backend_id, language, text)
        if cached is not None:
            return cached
        translation = self.backend.translate(text, language)
        self.cache.put(self.backend_id, language, text, translation)
        return translation
