"""The vittle demo as a script: `python app.py [flags]` (what a Hugging Face Space runs) or
`gradio app.py` (reload mode: edits to the UI code reload the page; the models load once).
The flags and the environment variables are those of `vittle demo` (app/main.py)."""

import logging

import gradio as gr

from vittle.app.main import build_ui, configure_threads, launch_options, make_service, parse_args, serve_when_ready, stop_on_sigterm

if gr.NO_RELOAD:  # a reload re-runs this file without this block: the models stay loaded
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args()
    configure_threads(args.threads)
    service = make_service(args)
    stop_on_sigterm(service)

demo = build_ui(args, service)  # module level, so `gradio app.py` finds it

if __name__ == "__main__":
    serve_when_ready(service)
    demo.launch(**launch_options(args))
