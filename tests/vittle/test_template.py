

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
