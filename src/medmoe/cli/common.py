"""Option builders and loaders shared by subcommands, so one concept has one name everywhere.

The names (checked over the whole argparse tree by ``tests/cli/test_cli_names.py``):

- ``--checkpoint``: a SAM-Med3D checkpoint (``--base`` is kept as an alias in the trainers);
- ``--moe``: a SAM-Med3D-MoE bundle folder;
- ``--dataset``: a dataset (a path, or ``synthetic`` for the fundus MoE);
- ``--clicks``: the click counts at which ``evaluate`` scores (a list such as ``1,3,5,10``);
  trainers simulate ``--click-iterations`` clicks per crop;
- ``--seed``: an integer >= 0.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

CHECKPOINT_HELP = (
    "SAM-Med3D checkpoint: a .pth/.safetensors file or a registered name (medmoe-brain)"
)
MOE_HELP = "a SAM-Med3D-MoE bundle folder"


def ranged(kind, *, low=None, high=None, low_open=False, high_open=False, what=""):
    """An argparse ``type`` that parses ``kind`` and checks it lies in the range (exit 2, one line)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or (low is not None and (value < low or (low_open and value == low))):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names the type in its messages
    return parse


positive_int = ranged(int, low=1, what="an integer >= 1")
nonneg_int = ranged(int, low=0, what="an integer >= 0")
positive_float = ranged(float, low=0.0, low_open=True, high=float("inf"), what="a number > 0")
nonneg_float = ranged(float, low=0.0, high=float("inf"), what="a number >= 0")
unit_float = ranged(float, low=0.0, high=1.0, what="a number in [0, 1]")
tau_value = ranged(float, low=0.0, high=1.0, high_open=True, what="a number in [0, 1)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` or ``--moe``: the model a command runs."""
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    group.add_argument("--moe", type=Path, help=MOE_HELP)


def add_checkpoint_arg(p: argparse.ArgumentParser, *, help: str = CHECKPOINT_HELP) -> None:
    """The general SAM-Med3D checkpoint a trainer starts from; ``--base`` stays an alias."""
    p.add_argument("--checkpoint", "--base", dest="checkpoint", type=Path, required=True, help=help)


def add_moe_arg(p: argparse.ArgumentParser, *, help: str = MOE_HELP) -> None:
    p.add_argument("--moe", type=Path, required=True, help=help)


def add_seed_arg(p: argparse.ArgumentParser, *, help: str = "random seed") -> None:
    p.add_argument("--seed", type=nonneg_int, default=0, help=help + " (default 0)")


def add_trainer_args(
    p: argparse.ArgumentParser, *, out_help: str, epochs: int, click_iterations: int
) -> None:
    """What expert and gate training share: run folder, cache, schedule, clicks, crops, resume."""
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--cache", type=Path, help="embedding cache folder (default: OUT/cache)")
    p.add_argument(
        "--epochs", type=positive_int, default=epochs, help=f"passes over the crops ({epochs})"
    )
    p.add_argument("--batch-size", type=positive_int, default=4, help="crops per step (4)")
    add_click_iterations_arg(p, default=click_iterations)
    p.add_argument(
        "--crops-per-target",
        type=positive_int,
        default=2,
        help="jittered crops made around each labelled structure of each case (2)",
    )
    add_seed_arg(p, help="seed of the crops, clicks and initialisation")
    add_resume_args(p)
    add_runtime_args(p)
    add_config_arg(p)


def add_click_iterations_arg(p: argparse.ArgumentParser, *, default: int) -> None:
    p.add_argument(
        "--click-iterations",
        type=positive_int,
        default=default,
        help=f"simulated clicks per crop in each training step ({default})",
    )


def add_resume_args(p: argparse.ArgumentParser, *, keep: int | None = None) -> None:
    """``--resume`` and ``--keep-checkpoints`` (default ``keep``; None: every checkpoint)."""
    p.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last checkpoint"
    )
    p.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        metavar="N",
        default=keep,
        help=f"keep only the latest N epoch checkpoints (default: {keep or 'all'}; "
        "--resume needs one)",
    )


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """How a trainer uses its machine: DataLoader workers, autocast precision, deterministic
    kernels (:class:`medmoe.train.task.Runtime`)."""
    p.add_argument(
        "--workers",
        type=nonneg_int,
        metavar="N",
        help="DataLoader worker processes (default: 4 on CUDA, 0 on the CPU)",
    )
    p.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default="bf16",
        help="autocast precision on CUDA (bf16); a CPU run computes in float32 either way",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="PyTorch's deterministic kernels where it has them, no cuDNN autotuning "
        "(slower on CUDA; a warning names the ops without one)",
    )


def runtime_of(args: argparse.Namespace):
    """The :class:`medmoe.train.task.Runtime` of :func:`add_runtime_args`' options."""
    from medmoe.train.task import Runtime

    return Runtime(workers=args.workers, precision=args.precision, deterministic=args.deterministic)


# namespace entries that are not a trainer's options: the subcommand, its action, its function
_NOT_OPTIONS = ("command", "action", "func", "config")
OPTIONS_FILE = "options.json"  # the resolved options, written into a trainer's --out folder


def add_config_arg(p: argparse.ArgumentParser) -> None:
    """``--config FILE``: a trainer's options from a JSON object (a recipe in one file)."""
    p.add_argument(
        "--config",
        action=_ConfigFile,
        metavar="FILE",
        help='options from a JSON object of option names and values ({"epochs": 5, '
        '"lr-gate": 1e-5}); it counts where it stands, so options after it override it; the '
        f"resolved options are written to OUT/{OPTIONS_FILE}, itself a valid FILE",
    )


class _ConfigFile(argparse.Action):
    """Reads the file as it is met, like argparse's own ``@file``: every key is checked against
    the subcommand's options and parsed by that option's ``type`` (ranges, choices), and an
    unknown key or a bad value exits with one line (code 2)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        for action, value in _read_options(parser, values):
            setattr(namespace, action.dest, value)
            # given by the file, so not required on the command line any more; argparse checks
            # ``required`` only after every option is read (this parser is built per command)
            action.required = False


def _read_options(parser: argparse.ArgumentParser, path: str):
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        parser.error(f"--config {path}: {err.strerror or err}")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        parser.error(f"--config {path}: not a JSON file ({err})")
    if not isinstance(data, dict):
        parser.error(f"--config {path}: expected a JSON object of option names and values")
    actions = {
        a.dest: a
        for a in parser._actions  # argparse has no public list of a parser's options
        if a.option_strings and a.dest not in (*_NOT_OPTIONS, "help")
    }
    keys = {key: str(key).lstrip("-").replace("-", "_") for key in data}
    unknown = [key for key, dest in keys.items() if dest not in actions]
    if unknown:
        parser.error(f"--config {path}: unknown option(s) {', '.join(map(repr, unknown))}")
    out = []
    for key, dest in keys.items():
        try:
            out.append((actions[dest], _option_value(actions[dest], data[key])))
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            parser.error(f"--config {path}: {key!r}: {err}")
    return out


def _option_value(action: argparse.Action, value):
    """A JSON value as the command line would have given it to ``action``."""
    if action.nargs == 0:  # store_true and the like
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if value is None:
        if action.default is None:
            return None
        raise ValueError("null is not a value of this option")
    if action.nargs in ("*", "+"):
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return [_one_value(action, v) for v in value]
    return _one_value(action, value)


def _one_value(action: argparse.Action, value):
    if isinstance(value, (list, dict)) or (isinstance(value, bool) and action.type is not None):
        raise ValueError(f"expected one value, got {value!r}")
    parsed = action.type(str(value)) if action.type is not None else str(value)
    if action.choices is not None and parsed not in action.choices:
        raise ValueError(f"expected one of {sorted(action.choices)}, got {value!r}")
    return parsed


def save_options(args: argparse.Namespace) -> Path | None:
    """Write the resolved options of a trainer's command line to ``OUT/options.json`` (on the
    main process only), so that ``--config OUT/options.json`` runs the same recipe again."""
    if os.environ.get("RANK", "0") != "0":
        return None
    from medmoe.utils.files import atomic_write

    options = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_OPTIONS}
    path = Path(args.out) / OPTIONS_FILE
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(options, indent=2, default=str) + "\n")
    return path


def load_predictor(args: argparse.Namespace):
    """A :class:`Sam3DPredictor` for ``--checkpoint`` or a :class:`MoEPredictor` for ``--moe``,
    with the model on ``--device`` (``auto`` when the subcommand has no such option)."""
    from medmoe.utils.device import resolve_device

    device = resolve_device(getattr(args, "device", "auto"))
    if getattr(args, "moe", None) is not None:
        from medmoe.moe import MoEPredictor, load_moe_bundle

        return MoEPredictor(load_moe_bundle(args.moe).to(device))
    from medmoe.sam3d import Sam3DPredictor, load_sam3d

    return Sam3DPredictor(load_sam3d(args.checkpoint).to(device))


def load_base_for_training(args: argparse.Namespace):
    """``--checkpoint`` on ``--device`` (frozen, eval), its SHA-256, and the embedding cache under
    ``--cache`` (default ``OUT/cache``): what expert and gate training both start from."""
    from medmoe.moe import EmbeddingCache
    from medmoe.sam3d import load_sam3d
    from medmoe.sam3d.pretrained import resolve_checkpoint
    from medmoe.utils import file_sha256, seed_everything
    from medmoe.utils.device import resolve_device

    device = resolve_device(args.device)
    seed_everything(args.seed)
    base = load_sam3d(args.checkpoint).to(device).eval()
    sha = file_sha256(resolve_checkpoint(args.checkpoint))
    root = args.cache or args.out / "cache"
    return base, sha, EmbeddingCache(root=root, base_sha256=sha, encoder=base.image_encoder)
