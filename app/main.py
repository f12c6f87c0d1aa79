"""The vittle demo: baseline vs Vittle side by side on the same perturbed query.

    vittle demo                                     # embedded tiny models, 127.0.0.1:7860, CPU
    vittle demo --baseline llava-hf/llava-1.5-7b-hf --vittle PATH --device cuda
    python app.py ...                               # the same, from a checkout (a Space runs this)
    gradio app.py                                   # reload mode while editing the UI

On a Hugging Face Space the top-level app.py runs as is (the Space sets GRADIO_SERVER_NAME/PORT;
its variables VITTLE_BASELINE, VITTLE_VITTLE, VITTLE_VITTLE_L, VITTLE_DEVICE choose the models).
The options are generated from `DemoConfig` (app/config.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable

from starlette.middleware import Middleware
from threadpoolctl import threadpool_limits

from vittle.app.config import DemoConfig, ServiceConfig
from vittle.app.examples import examples_dir
from vittle.app.map_script import MAP_SCRIPT
from vittle.app.middleware import PageMiddleware
from vittle.app.own_folder import OwnFolder, claim
from vittle.options import configure_logging, parse

logger = logging.getLogger(__name__)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app runs offline
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")  # Gradio's per-event records: 1,000 kept, not 10,000 (~10 MB)

TRIM_EVERY_S = 60.0
"""How often the C heap's free pages go back to the system (`release_free_memory`)."""


def parse_args(argv: list[str] | None = None) -> DemoConfig:
    """The demo's settings from the command line and the environment (see app/config.py)."""
    return parse(DemoConfig, argv, prog="vittle demo", description=__doc__.split("\n\n")[0])


def make_service(config: DemoConfig):
    """The service for `config`, not started."""
    from vittle.app.service import DemoService  # heavy

    service_fields = {f.name for f in dataclasses.fields(ServiceConfig)}
    settings = {name: value for name, value in vars(config).items() if name in service_fields}
    return DemoService(ServiceConfig(**settings))


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`). A server that
    allocates and frees arrays for every request otherwise keeps the freed pages: its resident
    memory creeps up although nothing is kept. False where there is no glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


HEAP_ARENAS = 2
"""glibc malloc arenas for the whole process (its default: up to 8 per core, a new one for each
thread that finds the others busy): a server whose threads (Gradio's pool, one per model, the
warm-up) take turns at freeing each other's arrays spreads free pages over every arena, where
they stay. (A fixed 1 MB mmap threshold was tried too: the page took 22 s instead of 10 and the
first answers 4.6 s instead of 2.1, every large tensor paying for fresh pages.)"""


def configure_heap(arenas: int = HEAP_ARENAS) -> bool:
    """Set glibc's `mallopt` M_ARENA_MAX (call it before the server's threads start: arenas made
    before stay). False where there is no glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def _housekeeping(folder: OwnFolder, lifetime_s: float) -> None:
    """Every minute the free heap goes back to the system; every 10 minutes (or each lifetime,
    when shorter) the app's old files go, and with them Gradio's records of them
    (`forget_deleted_files`). Ends when the app's folder is removed (at exit)."""
    sweep_every, last_sweep = min(600.0, lifetime_s), time.monotonic()
    while folder.path.is_dir():
        time.sleep(min(TRIM_EVERY_S, sweep_every))
        if time.monotonic() - last_sweep >= sweep_every:
            folder.sweep(lifetime_s)
            for demo in list(_DEMOS):
                forget_deleted_files(demo)
            last_sweep = time.monotonic()
        release_free_memory()


_DEMOS: weakref.WeakSet = weakref.WeakSet()
"""The Blocks built by `build_ui` (a reload builds another), whose file records the sweep prunes."""


def forget_deleted_files(demo) -> int:
    """Drop the paths that no longer exist from Gradio's records of uploads and output files
    (`Blocks.temp_file_sets`: the uploads' set and one per component, kept for its clean-up at
    exit). Gradio adds every upload's and every output file's path and never removes one: about
    2.4 paths (~150 bytes each) per sessionless call, for as long as the server runs, after the
    sweep has deleted the files. Returns how many paths went."""
    dropped = 0
    for files in list(getattr(demo, "temp_file_sets", [])):
        gone = [path for path in list(files) if not os.path.exists(path)]
        for path in gone:
            files.discard(path)
        dropped += len(gone)
    return dropped


SESSION_PRUNE_S = 60.0
"""How often Gradio's records of sessions with no event pending are dropped."""


def prune_finished_sessions(queue) -> int:
    """Drop Gradio's per-session records of sessions with nothing pending: the empty sets of
    pending event ids, and the message queues of sessions with no pending event whose messages
    were all read. Gradio keeps one of each per session hash after its events complete, and every
    sessionless API call is a session of its own: without this the sets grow by one a call for
    as long as the server runs, and the queues (asyncio queues of a few KB each) up to 2,000.
    Must run in the server's event loop (where Gradio adds to both). Returns how many sessions'
    records went."""
    pending = queue.pending_event_ids_session
    empty = [key for key, ids in list(pending.items()) if not ids]
    for key in empty:
        pending.pop(key, None)
    messages = queue.pending_messages_per_session
    read = [key for key, waiting in list(messages.items()) if not pending.get(key) and waiting.empty()]
    for key in read:
        messages.pop(key, None)
    return len(set(empty) | set(read))


def _prune_sessions_in_the_loop(demo) -> Callable[[], Awaitable[None]]:
    """A startup event of the server (run in its event loop) that prunes every `SESSION_PRUNE_S`."""
    async def start() -> None:
        async def every() -> None:
            while True:
                await asyncio.sleep(SESSION_PRUNE_S)
                if demo._queue is not None:
                    prune_finished_sessions(demo._queue)

        demo._vittle_pruning = asyncio.get_running_loop().create_task(every())  # kept: a task nobody holds may be collected

    return start


def stop_on_sigterm(service=None) -> None:
    """SIGTERM (how a Space or a container stops the app) ends it as Ctrl-C does, so Gradio
    deletes its uploads and outputs on the way out. Both first stop `service`'s model threads
    (the job running finishes, the queued ones are cancelled): an interpreter that exits while a
    model thread is inside torch aborts ("terminate called without an active exception")."""
    def stop(signum: int, frame: object) -> None:
        if service is not None:
            logger.info("stopping: the models finish the job they are in")
            service.close(cancel=True)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def build_ui(args: DemoConfig, service):
    """The queued Blocks over `service`, which is started here (idempotent). Uploads and
    outputs go to a folder of the app's own inside Gradio's shared one (`own_folder.claim`):
    the sweep (every 10 minutes, or each lifetime when shorter) and the exit delete its files
    only. A housekeeping thread runs the sweep and hands free heap memory back every minute."""
    from vittle.app.ui import build_demo  # heavy

    lifetime_s = max(1.0, args.file_lifetime_min * 60)
    folder = claim()  # before any component is made: Gradio reads the folder then
    if not any(thread.name == "vittle-housekeeping" for thread in threading.enumerate()):  # one, also in reload mode
        threading.Thread(target=_housekeeping, args=(folder, lifetime_s), name="vittle-housekeeping", daemon=True).start()
    service.start()
    demo = build_demo(service, file_lifetime_s=max(1, round(args.file_lifetime_min * 60)))
    _DEMOS.add(demo)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    demo.extra_startup_events.append(_prune_sessions_in_the_loop(demo))
    return demo


def build(args: DemoConfig, service=None):
    """The started service (made from `args` unless given) and its queued Blocks."""
    if service is None:
        service = make_service(args)
    return service, build_ui(args, service)


def configure_threads(threads: int) -> int:
    """Torch's intra-op threads for the server (0: half the cores, at least 1) and one BLAS
    thread for numpy (its matrices here are a few hundred rows). Each model has a worker
    thread that batches its requests, so the parallelism is across the models; on a 2-core
    machine under load, two threads per forward made each core spin waiting for the other
    (CPU per new reference set 1.2 s -> 0.7 s with one). The C heap is set up first
    (`configure_heap`), before the model and server threads start. Returns the torch thread count."""
    configure_heap()
    import torch  # heavy
    count = threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(count)
    threadpool_limits(1, user_api="blas")
    return count


def launch_options(args: DemoConfig) -> dict:
    from vittle.app.page import CSS, KEYS_SCRIPT, intro_html, page_script, theme  # heavy

    options = {"server_name": args.host, "server_port": args.port, "share": args.share, "max_file_size": args.max_upload_bytes,
               "allowed_paths": [str(examples_dir())], "show_error": True, "css": CSS, "theme": theme(),
               "js": page_script(MAP_SCRIPT, KEYS_SCRIPT),
               "state_session_capacity": args.sessions,
               "app_kwargs": {"middleware": [Middleware(PageMiddleware, header=intro_html())]}}
    if args.auth:
        options["auth"] = tuple(args.auth.split(":", 1))
    if args.mcp:
        options["mcp_server"] = True
    return options


def main(argv: list[str] | None = None) -> int:
    configure_logging(logging.INFO, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    configure_threads(args.threads)
    service, demo = build(args)
    stop_on_sigterm(service)
    serve_when_ready(service)
    demo.launch(**launch_options(args))
    return 0


def serve_when_ready(service, timeout: float = 120) -> None:
    """Wait (at most `timeout`) for the models before the page is served, so that a visitor's
    first Run answers at once instead of waiting for a warm-up behind a page that looks ready;
    the reference sets of the panels are embedded after, in the background."""
    if not service.wait_models(timeout):
        logger.warning("the models are still loading after %.0f s; serving the page anyway", timeout)


if __name__ == "__main__":
    sys.exit(main())
