"""The vicuna-v1 conversation template LLaVA-1.5 is trained with.

    "{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>"

Answers (with their closing "</s>") are the only supervised spans. At inference the prompt
ends with "ASSISTANT:" and the model continues.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
SYSTEM_PROMPT_KEY = "vittle_system_prompt"  # model config attribute for a model trained with another one
IMAGE_PLACEHOLDER = "<image>"
USER, ASSISTANT = "USER", "ASSISTANT"
EOS = "</s>"


def system_prompt_of(model_config: object) -> str:
    """The system prompt a model was trained with: vicuna-v1's unless its config says."""
    value = getattr(model_config, SYSTEM_PROMPT_KEY, None)
    return SYSTEM_PROMPT if value is None else str(value)


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
