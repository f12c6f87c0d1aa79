"""Translation of prompts into Arabic, Greek and Hindi through one `Translator` interface.

Backends (chosen by `TranslationSettings.backend`, or the first available under "auto"):
- "openai": any OpenAI-compatible chat API (base URL, model, key), as the paper did with
  GPT-4o;
- "hf": a local Hugging Face seq2seq model folder (Marian per language pair, or NLLB);
- "gloss": an offline word-by-word gloss over Debian's freedict dictionaries. It is not a
  translation, and it is labelled as a gloss wherever it shows.
Every backend is wrapped in an on-disk cache, so a rerun is reproducible and free.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .cache import CachedTranslator
from .freedict import APT_PACKAGES, FreedictGlossTranslator, dictionaries_present
from .hf_seq2seq import HFSeq2SeqTranslator
from .openai_chat import OpenAIChatTranslator
from .prompt import split_prompt
from .translation_types import TRANSLATOR_PROMPT, Language, TranslationError, TranslationUnavailable, Translator

__all__ = ["BACKENDS", "TRANSLATOR_PROMPT", "Language", "TranslationError", "TranslationSettings", "TranslationUnavailable",
           "Translator", "get_translator", "translate_prompt", "translation_unavailable"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "openai", "hf", "gloss")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass(frozen=True)
class TranslationSettings:
    """Where translations come from; `from_env()` reads the VITTLE_* variables."""

    backend: str = field(default="auto", metadata={"choices": BACKENDS, "env": "VITTLE_TRANSLATOR"})
    """Where translations come from; "auto": the first configured of openai, hf, gloss."""
    base_url: str | None = field(default=None, metadata={"env": "VITTLE_TRANSLATE_BASE_URL"})
    """OpenAI-compatible API base URL, e.g. https://api.openai.com/v1."""
    model: str | None = field(default=None, metadata={"env": "VITTLE_TRANSLATE_MODEL"})
    """Chat model name, e.g. gpt-4o."""
    api_key: str | None = field(default=None, repr=False, metadata={"env": "VITTLE_TRANSLATE_API_KEY", "cli": False})
    """API key (from the environment only, so that it stays out of process lists and shell history)."""
    hf_model: str | None = field(default=None, metadata={"env": "VITTLE_TRANSLATE_HF_MODEL"})
    """Local seq2seq model folder (NLLB), or a pattern with {lang} (ar, el, hi) for Marian folders per language pair."""
    dict_dir: str = field(default="/usr/share/dictd", metadata={"env": "VITTLE_FREEDICT_DIR"})
    """Folder of the freedict dictionaries for the gloss backend."""
    cache_dir: str | None = field(default=None, metadata={"env": "VITTLE_TRANSLATION_CACHE"})
    """Translation cache folder; null: ~/.cache/vittle/translations."""
    timeout_s: float = field(default=60.0, metadata={"cli": False})
    """API request timeout in seconds."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown translation backend {self.backend!r}; valid: {', '.join(BACKENDS)}")

    @classmethod
    def from_env(cls, **overrides: object) -> TranslationSettings:
        """Settings from the environment; non-None `overrides` win."""
        values: dict[str, object] = {}
        for f in fields(cls):
            env_name = f.metadata.get("env")
            if env_name and _env(env_name) is not None:
                values[f.name] = _env(env_name)
        if "api_key" not in values and _env("OPENAI_API_KEY"):
            values["api_key"] = _env("OPENAI_API_KEY")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path.home() / ".cache" / "vittle" / "translations"



HOW_TO_CONFIGURE = (
    "Configure one of:\n"
    "  (a) an OpenAI-compatible chat API: set VITTLE_TRANSLATE_BASE_URL (e.g. https://api.openai.com/v1), "
    "VITTLE_TRANSLATE_MODEL (e.g. gpt-4o) and VITTLE_TRANSLATE_API_KEY;\n"
    "  (b) a local Hugging Face seq2seq model folder (NLLB, or Marian with {lang} in the path): "
    "set VITTLE_TRANSLATE_HF_MODEL;\n"
    "  (c) the offline word gloss (not a real translation): "
    "apt-get install dict-freedict-eng-ara dict-freedict-eng-ell dict-freedict-eng-hin.\n"
    "The same options exist on the command line as --translate-base-url, --translate-model, "
    "--translate-hf-model and --translate-backend."
)


def translation_unavailable(settings: TranslationSettings | None = None) -> str | None:
    """Why no translation can be made with `settings` (environment settings by default), or
    None when a backend is configured. Cheap: checks files and settings, loads nothing."""
    settings = settings or TranslationSettings.from_env()
    backend = settings.backend
    if backend in ("auto", "openai") and settings.base_url and settings.model:
        return None
    if backend in ("auto", "hf") and settings.hf_model:
        return None
    if backend in ("auto", "gloss") and dictionaries_present(settings.dict_dir):
        return None
    if backend == "openai":
        return "the openai translation backend needs VITTLE_TRANSLATE_BASE_URL and VITTLE_TRANSLATE_MODEL"
    if backend == "hf":
        return "the hf translation backend needs VITTLE_TRANSLATE_HF_MODEL"
    return (f"no translation backend: the freedict dictionaries are not in {settings.dict_dir} "
            f"(apt-get install {APT_PACKAGES}) and no translation API or model is configured")


def _build_backend(settings: TranslationSettings) -> Translator:
    backend = settings.backend
    if backend == "auto":
        if settings.base_url and settings.model:
            backend = "openai"
        elif settings.hf_model:
            backend = "hf"
        else:
            if not dictionaries_present(settings.dict_dir):
                raise TranslationUnavailable("No translation backend is available. " + HOW_TO_CONFIGURE)
            backend = "gloss"
            logger.warning("translating with the freedict word gloss: word-by-word, not a real translation")
    if backend == "openai":
        if not (settings.base_url and settings.model):
            raise TranslationUnavailable("The openai backend needs a base URL and a model. " + HOW_TO_CONFIGURE)
        return OpenAIChatTranslator(settings.base_url, settings.model, settings.api_key, settings.timeout_s)
    if backend == "hf":
        if not settings.hf_model:
            raise TranslationUnavailable("The hf backend needs a model folder. " + HOW_TO_CONFIGURE)
        return HFSeq2SeqTranslator(settings.hf_model)
    return FreedictGlossTranslator(settings.dict_dir)


def get_translator(settings: TranslationSettings | None = None) -> Translator:
    """The configured backend behind the on-disk cache (environment settings by default)."""
    return _cached_translator(settings or TranslationSettings.from_env())


@functools.lru_cache(maxsize=8)
def _cached_translator(settings: TranslationSettings) -> Translator:
    # One instance per settings: backends hold loaded dictionaries, models and clients.
    return CachedTranslator(_build_backend(settings), settings.cache_path)


def translate_prompt(text: str, language: Language | str, translator: Translator) -> str:
    """Translate the editable parts of a prompt, keeping `<image>` and the answer format."""
    language = Language(language)
    parts = split_prompt(text)
    return str(parts.replace_editable([translator.translate(piece, language) for piece in parts.editable]))
