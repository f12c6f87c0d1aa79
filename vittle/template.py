"""The conversation templates: vicuna-v1 (LLaVA-1.5, LLaVA-NeXT), ChatML (Qwen-VL), ChatML with
LLaVA's image line (LLaVA-OneVision, InternVL), Gemma (Gemma 3) and Idefics (Idefics3).

vicuna-v1, the one LLaVA-1.5 is trained with:

    "{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>"

Answers (with their closing "</s>") are the only supervised spans. At inference the prompt
ends with "ASSISTANT:" and the model continues.

Long file: every family's chat format (its text, answer spans, image placement and the Jinja
template that renders the same) stays in one module, so the formats can be read side by side and
keep one shape (the methods `vittle.families` and the data code call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
SYSTEM_PROMPT_KEY = "vittle_system_prompt"  # model config attribute for a model trained with another one
IMAGE_PLACEHOLDER = "<image>"
USER, ASSISTANT = "USER", "ASSISTANT"
EOS = "</s>"


def system_prompt_of(model_config: object, default: str = SYSTEM_PROMPT) -> str:
    """The system prompt a model was trained with: `default` (vicuna-v1's, or the family's chat
    format's) unless its config says."""
    value = getattr(model_config, SYSTEM_PROMPT_KEY, None)
    return default if value is None else str(value)


def format_conversation(turns: list[tuple[str, str]], eos: str = EOS, system: str = SYSTEM_PROMPT) -> tuple[str, list[tuple[int, int]]]:
    """Render (question, answer) pairs; returns the text and the character spans of the
    answers (each including its closing `eos`). An empty last answer leaves the prompt open
    for generation. An empty `system` drops the system prompt."""
    text = system + " " if system else ""
    spans: list[tuple[int, int]] = []
    for index, (question, answer) in enumerate(turns):
        text += f"{USER}: {question} {ASSISTANT}:"
        if answer == "" and index == len(turns) - 1:
            break
        start = len(text)
        text += f" {answer}{eos}"
        spans.append((start, len(text)))
    return text, spans


def build_prompt(question: str, has_image: bool, system: str = SYSTEM_PROMPT) -> str:
    """The single-turn inference prompt for `question`, with the image placeholder first."""
    if has_image and IMAGE_PLACEHOLDER not in question:
        question = f"{IMAGE_PLACEHOLDER}\n{question}"
    return format_conversation([(question, "")], system=system)[0]


def chat_template(system: str = SYSTEM_PROMPT, eos: str = EOS) -> str:
    """A Jinja chat template that renders Hugging Face chat messages exactly as
    `format_conversation` does, so `processor.apply_chat_template(messages)` gives the prompt
    the model was trained with (a leading "system" message replaces `system`). Images come
    first in a user turn, each as "<image>\\n". Every user turn ends with "ASSISTANT:", so the
    prompt is open for the answer with or without add_generation_prompt."""
    default = system.replace("\\", "\\\\").replace("'", "\\'")
    return (
        "{%- set ns = namespace(system='" + default + "') -%}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- if messages[0]['content'] is string -%}{%- set ns.system = messages[0]['content'] -%}"
        "{%- else -%}{%- set ns.system = messages[0]['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}"
        "{%- endif -%}{%- endif -%}"
        "{%- if ns.system -%}{{ ns.system }} {% endif -%}"
        "{%- for message in messages if message['role'] != 'system' -%}"
        "{%- if message['content'] is string -%}{%- set text = message['content'] -%}{%- set images = 0 -%}"
        "{%- else -%}"
        "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}"
        "{%- set images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
        "{%- endif -%}"
        "{%- if message['role'] == 'user' -%}"
        "USER: {{ '<image>\\n' * images }}{{ text }} ASSISTANT:"
        "{%- else -%}{{ ' ' + text }}" + eos + "{%- endif -%}"
        "{%- endfor -%}"
    )


def expand_image(text: str, image_token: str, count: int) -> str:
    """The vicuna prompt's image placeholder replaced by `count` image tokens."""
    return text.replace(IMAGE_PLACEHOLDER, image_token * count)


class Vicuna:
    """The vicuna-v1 format above, as a chat format object (`vittle.families` picks one per family)."""

    name = "vicuna-v1"
    system = SYSTEM_PROMPT
    answer_head = f"{ASSISTANT}:"
    """What the prompt ends with; an answer's tokens are those written after it (vittle.scoring)."""

    @staticmethod
    def format_conversation(turns: list[tuple[str, str]], eos: str = EOS, system: str = SYSTEM_PROMPT) -> tuple[str, list[tuple[int, int]]]:
        return format_conversation(turns, eos, system)

    @staticmethod
    def build_prompt(question: str, has_image: bool, system: str = SYSTEM_PROMPT) -> str:
        return build_prompt(question, has_image, system)

    @staticmethod
    def expand_image(text: str, image_token: str, count: int) -> str:
        return expand_image(text, image_token, count)

    @staticmethod
    def chat_template(system: str = SYSTEM_PROMPT, eos: str = EOS) -> str:
        return chat_template(system, eos)


def _escaped(text: str) -> str:
    """`text` inside a single-quoted Jinja string."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


class TurnFormat:
    """What the turn-based formats below share: a system opening, per turn a user part ending with
    `end`, the answer head, then the answer and `end` (the supervised span, after `answer_prefix`);
    the prompt ends with the answer head. A format says how its opening and its user part look
    (`_opening`, `_user`, and the Jinja of both in `_jinja_system`, `_jinja_user`)."""

    name = ""
    system = ""
    end = ""
    answer_head = ""
    answer_prefix = ""
    """Written between the answer head and the answer, inside the supervised span."""

    @classmethod
    def _opening(cls, system: str) -> str:
        return ""

    @classmethod
    def _user(cls, question: str, system: str, index: int) -> str:
        raise NotImplementedError

    @classmethod
    def format_conversation(cls, turns: list[tuple[str, str]], eos: str = "", system: str | None = None) -> tuple[str, list[tuple[int, int]]]:
        """As `format_conversation`; the end of an answer is always the format's own (`eos` is ignored)."""
        system = cls.system if system is None else system
        text = cls._opening(system)
        spans: list[tuple[int, int]] = []
        for index, (question, answer) in enumerate(turns):
            text += cls._user(question, system, index) + cls.answer_head
            if answer == "" and index == len(turns) - 1:
                break
            start = len(text)
            text += f"{cls.answer_prefix}{answer}{cls.end}"
            spans.append((start, len(text)))
            text += "\n"
        return text, spans

    @classmethod
    def build_prompt(cls, question: str, has_image: bool, system: str | None = None) -> str:
        if has_image and IMAGE_PLACEHOLDER not in question:
            question = f"{IMAGE_PLACEHOLDER}\n{question}"
        return cls.format_conversation([(question, "")], system=system)[0]

    @classmethod
    def expand_image(cls, text: str, image_token: str, count: int) -> str:
        slot = image_token * count
        return text.replace(IMAGE_PLACEHOLDER + "\n", slot).replace(IMAGE_PLACEHOLDER, slot)

    @classmethod
    def _jinja_system(cls) -> str:
        """Jinja written once before the turns (the system prompt is `ns.system`)."""
        return ""

    @classmethod
    def _jinja_user(cls, image: str) -> str:
        """Jinja of a user turn up to the answer head (`text`, `images`: its text and image count)."""
        raise NotImplementedError

    @classmethod
    def chat_template(cls, system: str | None = None, eos: str = "", image: str | None = None) -> str:
        """A Jinja chat template rendering messages as `format_conversation` does (images first in
        a user turn, each written as `image`, by default the format's); every user turn ends with
        the answer head."""
        default = _escaped(cls.system if system is None else system)
        return (
            "{%- set ns = namespace(system='" + default + "', first=true) -%}"
            "{%- if messages and messages[0]['role'] == 'system' -%}"
            "{%- if messages[0]['content'] is string -%}{%- set ns.system = messages[0]['content'] -%}"
            "{%- else -%}{%- set ns.system = messages[0]['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}"
            "{%- endif -%}{%- endif -%}"
            + cls._jinja_system() +
            "{%- for message in messages if message['role'] != 'system' -%}"
            "{%- if message['content'] is string -%}{%- set text = message['content'] -%}{%- set images = 0 -%}"
            "{%- else -%}"
            "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}"
            "{%- set images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
            "{%- endif -%}"
            "{%- if message['role'] == 'user' -%}" + cls._jinja_user(_escaped(cls.image_slot if image is None else image))
            + "{% else -%}{{ '" + _escaped(cls.answer_prefix) + "' + text }}" + cls.end + "\n{% endif -%}"
            "{%- endfor -%}"
        )

    image_slot = "<image>"
    """What `chat_template` writes for an image (the processor's image marker, expanded by the processor)."""


class ChatML(TurnFormat):
    """The ChatML format of Qwen-VL instruct models:

        "<|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n<|vision_start|>{image tokens}<|vision_end|>{q}<|im_end|>\\n
         <|im_start|>assistant\\n{a}<|im_end|>\\n"

    Answers with their "<|im_end|>" are the supervised spans; the prompt ends with
    "<|im_start|>assistant\\n". The image placeholder (with the newline after it) becomes the
    image tokens between the vision start and end markers."""

    name = "chatml"
    system = "You are a helpful assistant."
    end = "<|im_end|>"
    answer_head = "<|im_start|>assistant\n"
    vision_start, vision_end = "<|vision_start|>", "<|vision_end|>"
    image_slot = "<|vision_start|><|image_pad|><|vision_end|>"

    @classmethod
    def _opening(cls, system: str) -> str:
        return f"<|im_start|>system\n{system}{cls.end}\n" if system else ""

    @classmethod
    def _user(cls, question: str, system: str, index: int) -> str:
        return f"<|im_start|>user\n{question}{cls.end}\n"

    @classmethod
    def expand_image(cls, text: str, image_token: str, count: int) -> str:
        slot = cls.vision_start + image_token * count + cls.vision_end
        return text.replace(IMAGE_PLACEHOLDER + "\n", slot).replace(IMAGE_PLACEHOLDER, slot)

    @classmethod
    def _jinja_system(cls) -> str:
        return "{%- if ns.system -%}<|im_start|>system\n{{ ns.system }}<|im_end|>\n{% endif -%}"

    @classmethod
    def _jinja_user(cls, image: str) -> str:
        return "<|im_start|>user\n{{ '" + image + "' * images }}{{ text }}<|im_end|>\n<|im_start|>assistant\n"


class ChatMLImage(ChatML):
    """ChatML with the image written as LLaVA writes it, the LLaVA-OneVision (qwen2) format:

        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{image tokens}\n{q}<|im_end|>\n<|im_start|>assistant\n"

    The image placeholder becomes the image's text where it stands (no vision markers), the
    newline after it kept (the checkpoints' chat template writes "<image>\n" before the text).
    The default system prompt is ChatML's, as in the original training conversations (the
    transformers conversion's chat template writes none unless given one)."""

    name = "chatml-image"
    image_slot = "<image>\n"

    @classmethod
    def expand_image(cls, text: str, image_token: str, count: int) -> str:
        return text.replace(IMAGE_PLACEHOLDER, image_token * count)



class InternVLChat(ChatMLImage):
    """The InternVL (2.5, 3) format: `ChatMLImage` with the image written as the processor's
    "<IMG_CONTEXT>" in the chat template (transformers' InternVL conversion) and the system
    prompt of InternVL's own conversation template."""

    name = "internvl"
    system = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
    image_slot = "<IMG_CONTEXT>\n"


class Gemma(TurnFormat):
    """The Gemma (3) instruct format:

        "<start_of_turn>user\n{system}\n\n{image}{q}<end_of_turn>\n<start_of_turn>model\n{a}<end_of_turn>\n"

    (the tokenizer adds "<bos>"). Gemma has no system role: a system prompt opens the first user
    turn, and the default is none. Answers with their "<end_of_turn>" are the supervised spans.
    The image placeholder (with the newline after it) becomes the processor's image text, which
    brings its own blank lines."""

    name = "gemma"
    system = ""
    end = "<end_of_turn>"
    answer_head = "<start_of_turn>model\n"
    image_slot = "<start_of_image>"

    @classmethod
    def _user(cls, question: str, system: str, index: int) -> str:
        opening = f"{system}\n\n" if system and index == 0 else ""
        return f"<start_of_turn>user\n{opening}{question}{cls.end}\n"

    @classmethod
    def _jinja_user(cls, image: str) -> str:
        return ("<start_of_turn>user\n{% if ns.first and ns.system %}{{ ns.system }}\n\n{% endif %}{%- set ns.first = false -%}"
                "{{ '" + image + "' * images }}{{ text }}<end_of_turn>\n<start_of_turn>model\n")


class Idefics(TurnFormat):
    """The Idefics3 instruct format (the chat template of HuggingFaceM4/Idefics3-8B-Llama3):

        "User:{image}{q}<end_of_utterance>\nAssistant: {a}<end_of_utterance>\n"

    (the tokenizer adds its BOS). A question that opens with the image is glued to "User:" (the
    template writes ":" before an image, ": " before text); the image placeholder with the
    newline after it becomes the processor's image text. No system prompt by default; one given
    is a "System: {system}<end_of_utterance>\n" turn first. Answers with the space before them
    and their "<end_of_utterance>" are the supervised spans; the prompt ends with "Assistant:"."""

    name = "idefics"
    system = ""
    end = "<end_of_utterance>"
    answer_head = "Assistant:"
    answer_prefix = " "
    image_start = "<fake_token_around_image>"
    """What the image text begins with (the processor's tile marker)."""

    @classmethod
    def _opening(cls, system: str) -> str:
        return f"System: {system}{cls.end}\n" if system else ""

    @classmethod
    def _user(cls, question: str, system: str, index: int) -> str:
        glued = question.startswith((cls.image_start, IMAGE_PLACEHOLDER))
        return f"User:{'' if glued else ' '}{question}{cls.end}\n"

    @classmethod
    def expand_image(cls, text: str, image_token: str, count: int) -> str:
        """The (one) placeholder replaced once: the image text holds "<image>" tokens itself."""
        slot = image_token * count
        marker = IMAGE_PLACEHOLDER + "\n" if IMAGE_PLACEHOLDER + "\n" in text else IMAGE_PLACEHOLDER
        return text.replace(marker, slot, 1)

    @classmethod
    def _jinja_system(cls) -> str:
        return "{%- if ns.system -%}System: {{ ns.system }}<end_of_utterance>\n{% endif -%}"

    @classmethod
    def _jinja_user(cls, image: str) -> str:
        return "User:{{ ' ' if not images else '' }}{{ '" + image + "' * images }}{{ text }}<end_of_utterance>\nAssistant:"


ChatFormat = type[Vicuna] | type[TurnFormat]


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """The id of one token (`convert_tokens_to_ids` also takes and returns lists)."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise ValueError(f"{token!r} is not one token of this tokenizer")
    return found
