"""``medmoe serve``: the browser viewer and its HTTP API, under uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import add_model_args, load_predictor
from medmoe.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the browser viewer for interactive segmentation",
        description="Open http://HOST:PORT/ in a browser, load a NIfTI scan and click. "
        "The API schema is at /openapi.json (browsable at /docs).",
    )
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("medmoe-serve"),
        help="uploads are kept here (and nowhere else) while their session lives",
    )
    p.add_argument("--max-upload-mb", type=float, default=512.0)
    p.add_argument("--session-ttl", type=float, default=1800.0, help="seconds of inactivity")
    p.add_argument("--max-sessions", type=int, default=32)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from medmoe.serve.app import create_app
    except ImportError as err:
        raise InputError(
            f"medmoe serve needs the serve extra ({err.name} is missing): "
            'pip install -c constraints.txt -e ".[serve]"'
        ) from None
    from medmoe.serve import ServeConfig

    if not 0 < args.port < 65536:
        raise InputError(f"--port must be in 1..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.session_ttl <= 0 or args.max_sessions < 1:
        raise InputError("--max-upload-mb, --session-ttl and --max-sessions must be positive")
    if args.data_dir.exists() and not args.data_dir.is_dir():
        raise InputError(f"--data-dir {args.data_dir} exists and is not a folder")
    predictor = load_predictor(args)
    config = ServeConfig(
        data_dir=args.data_dir,
        max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
        session_ttl_s=args.session_ttl,
        max_sessions=args.max_sessions,
    )
    app = create_app(predictor=predictor, config=config)
    print(f"medmoe serve: open http://{args.host}:{args.port}/  (data in {args.data_dir})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
