

def test_chat_template_renders_what_format_conversation_does():
    import jinja2

    from vittle.template import SYSTEM_PROMPT, chat_template, format_conversation

    template = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).from_string(chat_template())
    cases = [
        ([{"role": "user", "content": "Hi"}], [("Hi", "")], SYSTEM_PROMPT),
        ([{"role": "system", "content": ""}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]}],
         [("<image>\nQ", "")], ""),
        ([{"role": "system", "content": "Be it's brief."}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
         [("a", "b")], "Be it's brief."),
    ]
    for messages, turns, system in cases:
        assert template.render(messages=messages) == format_conversation(turns, system=system)[0]


def test_chat_templates_of_the_family_formats_render_what_format_conversation_does():
    """Rendered as transformers renders chat templates (trim_blocks, lstrip_blocks): the newline
    after the assistant header and after each answer's end token survive."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from vittle.template import ChatML, ChatMLImage, Gemma, Idefics, InternVLChat

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]},
                {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}]
    for chat, marker in ((ChatML, "<|vision_start|><|image_pad|><|vision_end|>"), (ChatMLImage, "<image>\n"), (Gemma, "<start_of_image>"),
                         (Idefics, "<image>"), (InternVLChat, "<IMG_CONTEXT>\n")):
        expected = chat.format_conversation([("<image>\nQ", "A"), ("Q2", "")], system="Be brief.")[0]
        assert env.from_string(chat.chat_template()).render(messages=messages) == expected.replace("<image>\n", marker)
        default = chat.format_conversation([("Q", "")])[0]
        assert env.from_string(chat.chat_template()).render(messages=[{"role": "user", "content": "Q"}]) == default
