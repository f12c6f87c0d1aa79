"""Translation backends: an OpenAI-compatible API served on 127.0.0.1, the disk cache,
the freedict gloss, a local seq2seq folder, and the error when nothing is configured."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vittle.analysis.perturb import apply, describe
from vittle.analysis.perturb.cache import CachedTranslator
from vittle.analysis.perturb.freedict import (
    dictionaries_present,
    first_sense,
    word_forms,
)
from vittle.analysis.perturb.openai_chat import OpenAIChatTranslator
from vittle.analysis.perturb.translate import (
    Language,
    TranslationError,
    TranslationSettings,
    TranslationUnavailable,
    get_translator,
)

from . import need

SUFFIX = "\nAnswer the question using a single word or phrase."
PROMPT = f"<image>\nIs there a dog in the picture?{SUFFIX}"


class _ChatServer:
    """A minimal OpenAI-compatible endpoint that 'translates' by tagging the text."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.fail_next: list[int] = []  # status codes to answer before succeeding
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                if server.fail_next:
                    return self._send(server.fail_next.pop(0), {"error": "try later"})
                system, user = body["messages"][0]["content"], body["messages"][1]["content"]
                language = system.split(" into ")[1].split(".")[0]
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": f"[{language}] {user}"}}]})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server() -> Iterator[_ChatServer]:
    server = _ChatServer()
    yield server
    server.close()


def test_openai_compatible_api_translates_and_caches(chat_server, tmp_path):
    settings = TranslationSettings(backend="openai", base_url=chat_server.url, model="tiny-mt",
                                   api_key="sk-test", cache_dir=str(tmp_path / "cache"))
    translator = get_translator(settings)
    _, text = apply("greek", text=PROMPT, translator=translator)
    assert text == f"<image>\n[Greek] Is there a dog in the picture?{SUFFIX}"
    assert len(chat_server.requests) == 1
    request = chat_server.requests[0]
    assert request["model"] == "tiny-mt" and request["temperature"] == 0
    assert request["messages"][0]["content"] == (
        "Translate the following English text into Greek. Output only the translation.")
    assert request["messages"][1]["content"] == "Is there a dog in the picture?"  # no placeholder, no suffix
    assert chat_server.headers[0]["Authorization"] == "Bearer sk-test"

    assert apply("greek", text=PROMPT, translator=translator)[1] == text
    fresh = CachedTranslator(OpenAIChatTranslator(chat_server.url, "tiny-mt"), tmp_path / "cache")
    assert apply("zoom_blur:1+greek", text=PROMPT, translator=fresh)[1] == text  # a new process reads the disk
    assert len(chat_server.requests) == 1

    apply("hindi", text=PROMPT, translator=translator)
    assert len(chat_server.requests) == 2  # the cache is keyed by language too
    other_model = CachedTranslator(OpenAIChatTranslator(chat_server.url, "other-mt"), tmp_path / "cache")
    other_model.translate("Is there a dog in the picture?", Language.GREEK)
    assert len(chat_server.requests) == 3  # ... and by backend
    assert describe("greek", translator) == f"Greek (openai:tiny-mt@{chat_server.url})"


def test_api_retries_transient_errors_and_reports_others(chat_server):
    translator = OpenAIChatTranslator(chat_server.url, "tiny-mt", backoff_s=0.01)
    chat_server.fail_next = [503, 429]
    assert translator.translate("a cat", Language.ARABIC) == "[Arabic] a cat"
    assert len(chat_server.requests) == 3
    chat_server.fail_next = [401]
    with pytest.raises(TranslationError, match="HTTP 401"):
        translator.translate("a dog", Language.ARABIC)
    unreachable = OpenAIChatTranslator("http://127.0.0.1:9/v1", "m", retries=0, timeout_s=2)
    with pytest.raises(TranslationError, match="cannot reach"):
        unreachable.translate("a dog", Language.ARABIC)


def test_no_backend_fails_with_how_to_configure(tmp_path):
    settings = TranslationSettings(dict_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(TranslationUnavailable) as caught:
        apply("arabic", text=PROMPT, translator=get_translator(settings))
    message = str(caught.value)
    for hint in ("VITTLE_TRANSLATE_BASE_URL", "VITTLE_TRANSLATE_MODEL", "VITTLE_TRANSLATE_HF_MODEL",
                 "dict-freedict-eng-ara"):
        assert hint in message
    with pytest.raises(ValueError, match="auto, openai, hf, gloss"):
        TranslationSettings(backend="deepl")


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("VITTLE_TRANSLATE_BASE_URL", "http://example.invalid/v1")
    monkeypatch.setenv("VITTLE_TRANSLATE_MODEL", "gpt-4o")
    monkeypatch.delenv("VITTLE_TRANSLATE_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    settings = TranslationSettings.from_env(model="gpt-4o-mini")
    assert settings.base_url == "http://example.invalid/v1"
    assert (settings.model, settings.api_key) == ("gpt-4o-mini", "sk-env")
    assert "sk-env" not in repr(settings)


def test_dictd_entry_parsing():
    assert first_sense("cat /kat/ <N>\n1. gato~negro, felino\n      \"The cat sat.\"\n") == "gato negro"
    assert first_sense("dog /dog/\n\nperro (animal), can\n") == "perro"
    assert first_sense("x /x/\n      \"only an example\"\n") is None
    assert word_forms("Dogs")[:2] == ["dogs", "dog"] and "run" in word_forms("running")


def test_freedict_gloss_is_labelled_and_keeps_protected_parts(tmp_path):
    need(dictionaries_present("/usr/share/dictd"),
         "freedict missing: apt-get install dict-freedict-eng-ara dict-freedict-eng-ell dict-freedict-eng-hin")
    translator = get_translator(TranslationSettings(backend="gloss", cache_dir=str(tmp_path)))
    assert translator.is_gloss and "gloss" in translator.label(Language.GREEK)
    scripts = {"arabic": ("\u0600", "\u06ff"), "greek": ("\u0370", "\u03ff"), "hindi": ("\u0900", "\u097f")}
    expected_dog = {"arabic": "الكلب", "greek": "σκύλος", "hindi": "कुत्ता"}
    for language, (low, high) in scripts.items():
        out = apply(language, text=PROMPT, translator=translator)[1]
        assert out.startswith("<image>\n") and out.endswith(SUFFIX)
        core = out[len("<image>\n"): -len(SUFFIX)]
        assert sum(low <= ch <= high for ch in core) > len(core) // 3, core
        assert expected_dog[language] in core
        assert "gloss" in describe(language, translator)


def test_local_seq2seq_folder(tmp_path):
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    from vittle.analysis.perturb.hf_seq2seq import HFSeq2SeqTranslator

    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "ell_Grek", "arb_Arab", "hin_Deva",
                                         "is", "there", "a", "dog", "?"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    config = BartConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=2)
    folder = tmp_path / "tiny-nllb"
    BartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    translator = HFSeq2SeqTranslator(str(folder), max_new_tokens=6)
    out = translator.translate("is there a dog ?", Language.GREEK)
    assert isinstance(out, str)
    assert translator.translate("is there a dog ?", Language.GREEK) == out  # greedy: deterministic
    assert translator.backend_id == "hf:tiny-nllb"
    with pytest.raises(TranslationUnavailable, match="config.json"):
        HFSeq2SeqTranslator(str(tmp_path / "opus-mt-en-{lang}")).translate("a dog", Language.HINDI)
    assert HFSeq2SeqTranslator("/m/opus-mt-en-{lang}").folder(Language.GREEK).name == "opus-mt-en-el"
