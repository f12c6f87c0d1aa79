"""The translation interface shared by `translate` and its backends: the languages, the
`Translator` base class and its errors. Kept apart so that the backends and the code that
chooses among them import in one direction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum

TRANSLATOR_PROMPT = "Translate the following English text into {language}. Output only the translation."


class Language(str, Enum):
    ARABIC = "arabic"
    GREEK = "greek"
    HINDI = "hindi"

    @property
    def display(self) -> str:
        return self.value.capitalize()

    @property
    def iso(self) -> str:
        return {"arabic": "ar", "greek": "el", "hindi": "hi"}[self.value]

    @property
    def nllb(self) -> str:
        return {"arabic": "arb_Arab", "greek": "ell_Grek", "hindi": "hin_Deva"}[self.value]

    @property
    def freedict(self) -> str:
        return {"arabic": "ara", "greek": "ell", "hindi": "hin"}[self.value]


class TranslationUnavailable(RuntimeError):
    """No translation backend is configured or installed."""


class TranslationError(RuntimeError):
    """A backend was reached but did not produce a translation."""


class Translator(ABC):
    """Translates English text into one of the paper's languages."""

    is_gloss: bool = False  # True for word-by-word glosses, which are not translations

    @property
    @abstractmethod
    def backend_id(self) -> str:
        """A stable identity (backend and model) that keys the cache."""

    @abstractmethod
    def translate(self, text: str, language: Language) -> str:
        """The translation of `text` (plain English, no placeholders) into `language`."""

    def label(self, language: Language) -> str:
        """How to present the output, e.g. "Greek (word gloss, freedict)"."""
        kind = "word gloss, freedict" if self.is_gloss else self.backend_id
        return f"{language.display} ({kind})"
