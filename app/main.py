"""The vittle demo: baseline vs Vittle side by side on the same perturbed query.

    vittle demo                                     # embedded tiny models, 127.0.0.1:7860, CPU
    vittle demo --baseline llava-hf/llava-1.5-7b-hf --vittle PATH --device cuda
    python app.py ...                               # the same, from a checkout (a Space runs this)
    gradio app.py                                   # reload mode while editing the UI

On a Hugging Face Space the top-level app.py runs as is (the Space sets GRADIO_SERVER_NAME/PORT;
its variables VITTLE_BASELINE, VITTLE_VITTLE, VITTLE_VITTLE_L, VITTLE_DEVICE choose the models).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app runs offline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from app.config import ServiceConfig

    defaults = ServiceConfig()
    parser = argparse.ArgumentParser(prog="vittle demo", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="address to listen on")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    env = os.environ.get  # a Gradio-SDK Space passes no flags: its variables choose the models
    parser.add_argument("--baseline", default=env("VITTLE_BASELINE", defaults.baseline),
                        help="baseline model: local folder or hub id (env VITTLE_BASELINE)")
    parser.add_argument("--vittle", default=env("VITTLE_VITTLE", defaults.vittle), help="Vittle model: local folder or hub id (env VITTLE_VITTLE)")
    parser.add_argument("--vittle-l", default=env("VITTLE_VITTLE_L", defaults.vittle_l),
                        help="a second selectable Vittle model (folder or hub id); 'none' to leave it out (env VITTLE_VITTLE_L)")
    parser.add_argument("--device", default=env("VITTLE_DEVICE", "auto"),
                        help="auto (CUDA with bf16 when present, else CPU), cpu, cuda, cuda:1... (env VITTLE_DEVICE)")
    parser.add_argument("--reference-images", type=int, default=defaults.reference_images,
                        help="easy-vqa test images in the reference set of the embedding and distance panels")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="requests in progress at once (default 16; the rest queue): each model batches what they ask")
    parser.add_argument("--no-precompute", action="store_true",
                        help="do not embed every visual setting's reference set in the background after start-up")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads on a CPU (0: half the cores, at least 1: the two models of a turn run side by side, "
                        "and threads that wait for each other only spin); numpy's BLAS runs on one")
    parser.add_argument("--max-upload-mb", type=float, default=10, help="largest accepted upload, in MB")
    parser.add_argument("--file-lifetime-min", type=float, default=60,
                        help="delete uploads and output images after this many minutes (and all at shutdown)")
    args = parser.parse_args(argv)
    if args.reference_images < 3:
        parser.error(f"--reference-images must be at least 3, got {args.reference_images}")
    if args.concurrency < 1:
        parser.error(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.threads < 0:
        parser.error(f"--threads must be 0 (auto) or positive, got {args.threads}")
    if not args.file_lifetime_min > 0:
        parser.error(f"--file-lifetime-min must be positive, got {args.file_lifetime_min:g}")
    if not args.max_upload_mb > 0:
        parser.error(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}")
    for flag, value, default in (("--baseline", args.baseline, defaults.baseline), ("--vittle", args.vittle, defaults.vittle),
                                 ("--vittle-l", args.vittle_l, defaults.vittle_l)):
        if value == default and not Path(value).is_dir():
            parser.error(f"{flag}: the embedded model {value} is not here. The embedded models ship with the repository "
                         "(assets/models), not with the installed package: run from a clone of the repository, or "
                         "pass --baseline and --vittle (local folders or hub ids)")
    return args


def make_service(args: argparse.Namespace):
    """The service for `args`, not started."""
    from app.config import ServiceConfig
    from app.service import DemoService

    vittle_l = None if str(args.vittle_l).lower() in ("", "none") else args.vittle_l
    return DemoService(ServiceConfig(baseline=args.baseline, vittle=args.vittle, vittle_l=vittle_l, device=args.device,
                                     reference_images=args.reference_images, precompute=not args.no_precompute,
                                     max_upload_bytes=int(args.max_upload_mb * 1024 * 1024)))


def build_ui(args: argparse.Namespace, service):
    """The queued Blocks over `service`, which is started here (idempotent)."""
    from app.ui import build_demo

    service.start()
    demo = build_demo(service, file_lifetime_s=max(1, round(args.file_lifetime_min * 60)))
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    return demo


def build(args: argparse.Namespace, service=None):
    """The started service (made from `args` unless given) and its queued Blocks."""
    if service is None:
        service = make_service(args)
    return service, build_ui(args, service)


def configure_threads(threads: int) -> int:
    """Torch's intra-op threads for the server (0: half the cores, at least 1) and one BLAS
    thread for numpy (its matrices here are a few hundred rows). Each model has a worker
    thread that batches its requests, so the parallelism is across the models; on a 2-core
    machine under load, two threads per forward made each core spin waiting for the other
    (CPU per new reference set 1.2 s -> 0.7 s with one). Returns the torch thread count."""
    import torch
    from threadpoolctl import threadpool_limits

    count = threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(count)
    threadpool_limits(1, user_api="blas")
    return count


def launch_options(args: argparse.Namespace) -> dict:
    from app.examples import examples_dir

    return {"server_name": args.host, "server_port": args.port, "share": args.share, "max_file_size": int(args.max_upload_mb * 1024 * 1024),
            "allowed_paths": [str(examples_dir())], "show_error": True}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    configure_threads(args.threads)
    _, demo = build(args)
    demo.launch(**launch_options(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
