"""``medmoe serve``: the browser viewer, its HTTP API and the MONAI Label API, under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from medmoe.cli.common import add_model_args, load_predictor
from medmoe.errors import InputError
from medmoe.utils.device import add_device_arg

LOOPBACK_NAMES = ("localhost",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the browser viewer and the MONAI Label API (3D Slicer, OHIF)",
        description="Open http://HOST:PORT/ in a browser, load a NIfTI scan (or a zip of a "
        "DICOM series) and click; or point 3D Slicer's MONAILabel module at http://HOST:PORT, "
        "or OHIF's MONAI Label mode with --studies and --cors-origin (OHIF sends no login: "
        "with --auth, see docs/slicer-ohif.md). The API schema is at /openapi.json (browsable "
        "at /docs). Binding to an address other than loopback needs --auth.",
    )
    add_model_args(p)
    add_device_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    # numbers are checked in run(), not by argparse types, so that a bad value gets the one
    # line and exit code 2 of every MedmoeError (argparse would print its usage block too)
    p.add_argument("--port", type=int, default=8000, help="TCP port (8000)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("medmoe-serve"),
        help="uploads, the MONAI Label datastore and its labels are kept here and nowhere else",
    )
    _limit_args(p)
    _access_args(p)
    _studies_args(p)
    p.set_defaults(func=run)


def _limit_args(p: argparse.ArgumentParser) -> None:
    """How much the server accepts and keeps: uploads, memory, the datastore, sessions."""
    p.add_argument(
        "--max-upload-mb", type=float, default=512.0, help="largest upload accepted, in MB (512)"
    )
    p.add_argument(
        "--max-volume-mb",
        type=float,
        default=1024.0,
        help="largest scan in memory, as float32 at least (from its header, before reading)",
    )
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        default=4096.0,
        help="all scans held at once: viewer sessions, MONAI Label sessions, cached images",
    )
    p.add_argument(
        "--datastore-quota-mb",
        type=float,
        default=10240.0,
        help="the MONAI Label datastore's images and labels on disk",
    )
    p.add_argument("--max-uploads", type=int, default=4, help="uploads arriving at once")
    p.add_argument("--session-ttl", type=float, default=1800.0, help="seconds of inactivity")
    p.add_argument("--max-sessions", type=int, default=32, help="viewer sessions open at once (32)")


def _access_args(p: argparse.ArgumentParser) -> None:
    """Who may reach the server: its public address, CORS origins, logins."""
    p.add_argument(
        "--public-url",
        action="append",
        default=[],
        metavar="URL",
        help="a URL clients reach the server by (a reverse proxy's https://NAME): its host is "
        "accepted in the Host header; repeatable",
    )
    p.add_argument(
        "--cors-origin",
        "--allow-origin",
        dest="cors_origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web app at another origin (e.g. http://localhost:3000 for OHIF) allowed to call "
        "the API, with CORS and without credentials; repeatable (--allow-origin is an alias)",
    )
    p.add_argument(
        "--auth",
        action="store_true",
        help="require a bearer token on every endpoint but the page's files: the server token "
        "is MEDMOE_SERVE_TOKEN, or a random one printed at start-up (see SECURITY.md)",
    )
    p.add_argument(
        "--users",
        type=Path,
        help="with --auth: a file of NAME:pbkdf2_sha256$... lines (python -m medmoe.serve.auth "
        "NAME makes one) whose users log in at /auth/token (3D Slicer's MONAI Label module; "
        "OHIF's extension sends no login)",
    )
    p.add_argument(
        "--token-ttl",
        type=float,
        default=8 * 3600.0,
        help="seconds a token issued by /auth/token stays valid (default 8 h)",
    )


def _studies_args(p: argparse.ArgumentParser) -> None:
    """Where MONAI Label's images come from, and whether clients may train on them."""
    p.add_argument(
        "--studies",
        metavar="URL",
        help="a DICOMweb server's root (e.g. http://127.0.0.1:8042/dicom-web for Orthanc): the "
        "MONAI Label datastore is then its series, image id = SeriesInstanceUID, labels saved "
        "back as DICOM SEG (STOW-RS), and /proxy/dicom/qido|wado/ forward to it for OHIF",
    )
    p.add_argument(
        "--train",
        action="store_true",
        help="with --moe: MONAI Label's /train/ (a new task expert from the datastore's "
        "submitted labels, kept only if the old tasks keep their Dice) and /activelearning/; "
        "with --auth only the admin and reviewer roles may train",
    )


def check_numbers(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be in 1..65535, got {args.port}")
    numbers = ("max_upload_mb", "max_volume_mb", "memory_budget_mb", "datastore_quota_mb")
    for name in (*numbers, "max_uploads", "session_ttl", "max_sessions", "token_ttl"):
        value = getattr(args, name)
        if not 0 < value < float("inf"):
            raise InputError(f"--{name.replace('_', '-')} must be positive, got {value}")


def check_urls(args: argparse.Namespace) -> None:
    """``--public-url``, ``--cors-origin`` and ``--studies`` are absolute http(s) URLs (an
    origin has no path), so the Host and Origin checks compare like with like."""
    for flag, values, origin in (
        ("--public-url", args.public_url, False),
        ("--cors-origin", args.cors_origin, True),
        ("--studies", [args.studies] if args.studies else [], False),
    ):
        for value in values:
            if origin and value.strip() == "*":  # CORS for every web page on the internet
                raise InputError(f"{flag} '*' is refused: name each origin, e.g. http://HOST:3000")
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InputError(f"{flag} {value!r}: expected http(s)://HOST[:PORT]")
            if origin and parts.path not in ("", "/"):
                raise InputError(f"{flag} {value!r}: an origin has no path")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_config(args: argparse.Namespace):
    """The :class:`AuthConfig` for ``--auth`` (``None`` without it), and whether the server
    token was generated here (and so must be shown to the user)."""
    from medmoe.serve.auth import AuthConfig, load_users, server_token_from_env

    if not args.auth:
        if args.users is not None:
            raise InputError("--users needs --auth")
        if not is_loopback(args.host):
            raise InputError(
                f"--host {args.host} exposes the server beyond this machine: add --auth "
                "(and put TLS in front of it; see SECURITY.md)"
            )
        return None, False
    users = load_users(args.users) if args.users is not None else {}
    token, generated = server_token_from_env()
    return AuthConfig(token=token, users=users, token_ttl_s=args.token_ttl), generated


def training_config(args: argparse.Namespace):
    """The :class:`TrainingConfig` for ``--train`` (``None`` without it): continual learning on
    the ``--moe`` bundle, from the local datastore's submitted labels."""
    if not args.train:
        return None
    from medmoe.serve.monailabel.train_routes import TrainingConfig

    return TrainingConfig(bundle=args.moe)


def check_train(args: argparse.Namespace) -> None:
    if not args.train:
        return
    if args.moe is None:
        raise InputError("--train needs --moe BUNDLE: it adds task experts to a MoE bundle")
    if args.studies is not None:
        raise InputError("--train learns from the local datastore's labels: drop --studies")
    if not args.moe.is_dir():
        raise InputError(f"--moe {args.moe}: --train needs a bundle folder it can version")


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

    check_numbers(args)
    check_urls(args)
    check_train(args)
    auth, generated = auth_config(args)  # before the model loads: a refusal costs nothing
    if args.data_dir.exists() and not args.data_dir.is_dir():
        raise InputError(f"--data-dir {args.data_dir} exists and is not a folder")
    predictor = load_predictor(args)
    mib = 1 << 20
    config = ServeConfig(
        data_dir=args.data_dir,
        max_upload_bytes=int(args.max_upload_mb * mib),
        session_ttl_s=args.session_ttl,
        max_sessions=args.max_sessions,
        max_volume_bytes=int(args.max_volume_mb * mib),
        memory_budget_bytes=int(args.memory_budget_mb * mib),
        datastore_quota_bytes=int(args.datastore_quota_mb * mib),
        max_uploads=args.max_uploads,
        bind_host=args.host,
        public_urls=tuple(args.public_url),
        allow_origins=tuple(args.cors_origin),
        studies=args.studies,
    )
    app = create_app(predictor=predictor, config=config, auth=auth, training=training_config(args))
    url = f"http://{args.host}:{args.port}/"
    if auth is None:
        print(f"medmoe serve: open {url}  (data in {args.data_dir})", flush=True)
    elif generated:  # shown once, as Jupyter does; set MEDMOE_SERVE_TOKEN to choose it
        print(f"medmoe serve: open {url}?token={auth.token}  (data in {args.data_dir})", flush=True)
    else:
        print(
            f"medmoe serve: open {url}?token=<MEDMOE_SERVE_TOKEN>  (data in {args.data_dir})",
            flush=True,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
