"""``python -m medmoe.continual.worker JOB_DIR``: run the job of ``JOB_DIR/spec.json`` in its
own process, so that the server stays responsive and ``DELETE /train/`` can stop it at once.

Progress goes to standard output as one JSON object a line (``{"stage": ...}``, then
``{"stage", "epoch", "epochs", "loss"}`` after each epoch, read from the engine's
``metrics.jsonl`` files), and the last line is ``{"stage": "done", ...}`` or
``{"stage": "error", "error": "<one line>"}``. Exit code 0 when the job ran to its end (the
guard may still have refused the bundle), 2 for a refused input, 1 for anything else.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from medmoe.continual.config import JobSpec
from medmoe.errors import MedmoeError, first_line

_print_lock = threading.Lock()


def emit(**event) -> None:
    with _print_lock:
        print(json.dumps(event), flush=True)


def metrics_files(spec: JobSpec) -> list[tuple[str, Path, int]]:
    """``(stage, metrics.jsonl, epochs)`` of the job's three training runs, in order."""
    job = Path(spec.job_dir)
    gate_epochs = spec.config.gate_epochs or spec.request.max_epochs
    return [
        ("expert", job / "expert" / "checkpoints" / "metrics.jsonl", spec.request.max_epochs),
        ("gate warm-up", job / "gate" / "warmup" / "checkpoints" / "metrics.jsonl",
         spec.config.warmup_epochs),
        ("gate", job / "gate" / "checkpoints" / "metrics.jsonl", gate_epochs),
    ]  # fmt: skip


class MetricsWatcher(threading.Thread):
    """Emits an epoch event for each new line of the runs' ``metrics.jsonl``."""

    def __init__(self, *, spec: JobSpec, period_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.files = metrics_files(spec)
        self.seen = {path: 0 for _, path, _ in self.files}
        self.period_s = period_s
        self.halt = threading.Event()

    def poll(self) -> None:
        for stage, path, epochs in self.files:
            if not path.is_file():
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            for line in lines[self.seen[path] :]:
                try:
                    entry = json.loads(line)
                except ValueError:
                    break  # a line being written: read it next time
                emit(stage=stage, epoch=int(entry["epoch"]) + 1, epochs=epochs,
                     loss=round(float(entry["loss"]), 5))  # fmt: skip
                self.seen[path] += 1

    def run(self) -> None:
        while not self.halt.wait(self.period_s):
            self.poll()

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.poll()


def main(argv: list[str] | None = None) -> int:
    from medmoe.continual.pipeline import run_job

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m medmoe.continual.worker JOB_DIR", file=sys.stderr)
        return 2
    try:
        spec = JobSpec.from_json((Path(args[0]) / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as err:
        emit(stage="error", error=f"cannot read the job spec: {first_line(err)}")
        return 2
    watcher = MetricsWatcher(spec=spec)
    watcher.start()
    code = 0
    try:
        result = run_job(spec, report=emit)
    except MedmoeError as err:
        emit(stage="error", error=first_line(err))
        code = 2
    except Exception as err:  # noqa: BLE001 (reported as one line; the server stays up)
        emit(stage="error", error=f"{type(err).__name__}: {first_line(err)}")
        code = 1
    finally:
        watcher.stop()
    if code == 0:
        emit(stage="result", result=result)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
