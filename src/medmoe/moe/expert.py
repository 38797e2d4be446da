"""A task expert as a small artifact: ``decoder.safetensors`` + ``expert.json``.

The JSON records the name, the label names, the SHA-256 of the base checkpoint the expert was
finetuned from, the base architecture, the training config and the validation Dice. Loading an
expert onto a different base is refused: its decoder was tuned to that base's embeddings.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safetensors.torch import load_file, save_file

from medmoe.errors import CheckpointError, first_line
from medmoe.sam3d import MaskDecoder3D, Sam3DConfig, build_mask_decoder
from medmoe.utils.files import atomic_write, read_json_record

FORMAT = "medmoe-expert/1"
DECODER_FILE = "decoder.safetensors"
INFO_FILE = "expert.json"


@dataclass(frozen=True)
class ExpertInfo:
    name: str
    labels: list[str]
    base_sha256: str
    model_config: dict
    train_config: dict = field(default_factory=dict)
    val_dice: float | None = None
    format: str = FORMAT


def save_expert(out_dir: str | os.PathLike, *, decoder: MaskDecoder3D, info: ExpertInfo) -> Path:
    """Write the artifact; ``expert.json`` is written last, so its presence means complete."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    with atomic_write(out / DECODER_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "name": info.name})
    with atomic_write(out / INFO_FILE) as tmp:
        tmp.write_text(json.dumps(asdict(info), indent=2))
    return out


def read_expert_info(path: str | os.PathLike) -> ExpertInfo:
    return read_json_record(Path(path) / INFO_FILE, ExpertInfo, fmt=FORMAT, what="an expert")


def load_expert(
    path: str | os.PathLike, *, base_sha256: str | None = None, config: Sam3DConfig | None = None
) -> tuple[MaskDecoder3D, ExpertInfo]:
    """Load an expert; refuse it if it was trained on another base (hash) or architecture."""
    path = Path(path)
    info = read_expert_info(path)
    if base_sha256 is not None and info.base_sha256 != base_sha256:
        raise CheckpointError(
            f"expert {info.name!r} ({path}) was trained on a different base checkpoint "
            f"(sha256 {info.base_sha256[:12]}…, this base is {base_sha256[:12]}…)"
        )
    cfg = Sam3DConfig.from_dict(info.model_config)
    if config is not None and cfg != config:
        raise CheckpointError(f"expert {info.name!r} was built for another SAM-Med3D architecture")
    decoder = build_mask_decoder(cfg)
    try:
        state = load_file(str(path / DECODER_FILE))
        decoder.load_state_dict(state, strict=True)
    except Exception as err:  # safetensors and torch raise several types for bad files
        first = first_line(err)
        raise CheckpointError(f"{path / DECODER_FILE}: {first}") from None
    return decoder.eval(), info
