"""Translation with a local Hugging Face seq2seq model folder.

Two layouts are supported:
- one multilingual model (NLLB-200, M2M-100): the target language is forced as the first
  generated token (NLLB codes arb_Arab / ell_Grek / hin_Deva, M2M codes __ar__ ...);
  both tokenizers default to English as the source language;
- one model per language pair (Marian opus-mt-en-ar, -en-el, -en-hi): give a path
  pattern containing `{lang}`, which becomes ar, el or hi.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from .translation_types import Language, TranslationUnavailable, Translator

logger = logging.getLogger(__name__)

class HFSeq2SeqTranslator(Translator):
    """Greedy decoding with a local seq2seq model (no download: folders only)."""

    def __init__(self, model_path: str, device: str = "cpu", max_new_tokens: int = 256, num_beams: int = 1) -> None:
        self.model_path = model_path
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self._loaded: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    @property
    def backend_id(self) -> str:
        return f"hf:{Path(self.model_path).name}"

    def folder(self, language: Language) -> Path:
        return Path(self.model_path.replace("{lang}", language.iso))

    def _load(self, folder: Path) -> tuple[Any, Any]:
        with self._lock:
            key = str(folder)
            if key not in self._loaded:
                if not (folder / "config.json").is_file():
                    raise TranslationUnavailable(f"no Hugging Face model folder at {folder} (config.json missing)")
                from transformers import AutoModelForSeq2SeqLM, AutoTokenizer  # heavy

                tokenizer = AutoTokenizer.from_pretrained(folder)
                model = AutoModelForSeq2SeqLM.from_pretrained(folder).to(self.device).eval()
                self._loaded[key] = (tokenizer, model)
                logger.info("loaded translation model %s", folder)
            return self._loaded[key]

    def translate(self, text: str, language: Language) -> str:
        import torch  # heavy

        language = Language(language)
        tokenizer, model = self._load(self.folder(language))
        target = _target_token_id(tokenizer, language)
        inputs = tokenizer(text, return_tensors="pt", truncation=True).to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams,
                                  "do_sample": False}
        if target is not None:
            kwargs["forced_bos_token_id"] = target
        with torch.inference_mode():
            output = model.generate(**inputs, **kwargs)
        return tokenizer.decode(output[0], skip_special_tokens=True).strip()


def _target_token_id(tokenizer: Any, language: Language) -> int | None:
    """The language token a multilingual model must start with; None for pair models."""
    unknown = tokenizer.unk_token_id
    for token in (language.nllb, f"__{language.iso}__"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != unknown:
            return token_id
    return None
