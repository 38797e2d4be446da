"""A MoE bundle on disk: ``moe.json``, ``gate.safetensors`` and one folder per expert.

``moe.json`` names the base checkpoint (path, relative to the bundle when possible, and its
SHA-256), tau, the weighting, the gate config and the experts in gate order. Loading checks the
base's hash and every expert's recorded base hash.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safetensors.torch import load_file, save_file

from medmoe.errors import CheckpointError, InputError, first_line
from medmoe.moe.expert import load_expert, read_expert_info
from medmoe.moe.gate import Gate, GateConfig
from medmoe.moe.model import MoESam3D
from medmoe.utils.files import atomic_write, file_sha256, read_json_record

FORMAT = "medmoe-moe/1"
EXPERTS_DIR = "experts"


@dataclass(frozen=True)
class MoEConfig:
    base_checkpoint: str
    base_sha256: str
    experts: list[str]
    tau: float
    weighting: str
    gate: dict
    train_report: dict = field(default_factory=dict)
    format: str = FORMAT


def _write_config(bundle: Path, cfg: MoEConfig) -> None:
    with atomic_write(bundle / "moe.json") as tmp:
        tmp.write_text(json.dumps(asdict(cfg), indent=2))


def read_moe_config(bundle: str | os.PathLike) -> MoEConfig:
    return read_json_record(Path(bundle) / "moe.json", MoEConfig, fmt=FORMAT, what="a MoE bundle")


def _base_path(bundle: Path, cfg: MoEConfig) -> Path:
    p = Path(cfg.base_checkpoint)
    return p if p.is_absolute() else (bundle / p).resolve()


def save_moe_bundle(
    out_dir: str | os.PathLike,
    *,
    moe: MoESam3D,
    base_checkpoint: str | os.PathLike,
    base_sha256: str,
    expert_dirs: dict[str, Path],
    train_report: dict | None = None,
) -> Path:
    """Write the bundle: copies each expert's artifact into ``experts/<name>``."""
    from medmoe.moe.expert import ExpertInfo, save_expert

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, decoder in moe.experts.items():
        target = out / EXPERTS_DIR / name
        src = expert_dirs.get(name)
        info = (
            read_expert_info(src)
            if src is not None
            else ExpertInfo(
                name=name,
                labels=[name],
                base_sha256=base_sha256,
                model_config=moe.base.config.to_dict(),
            )
        )
        save_expert(target, decoder=decoder, info=info)
    with atomic_write(out / "gate.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in moe.gate.state_dict().items()}, str(tmp))
    base = Path(base_checkpoint).resolve()
    try:
        rel = os.path.relpath(base, out.resolve())
    except ValueError:  # another drive on Windows
        rel = str(base)
    _write_config(
        out,
        MoEConfig(
            base_checkpoint=rel,
            base_sha256=base_sha256,
            experts=moe.expert_names,
            tau=moe.tau,
            weighting=moe.weighting,
            gate=moe.gate.config.to_dict(),
            train_report=train_report or {},
        ),
    )
    return out


def load_moe_bundle(bundle: str | os.PathLike) -> MoESam3D:
    """Load base, experts and gate; refuse a base or expert whose hash does not match."""
    from medmoe.sam3d import load_sam3d

    bundle = Path(bundle)
    cfg = read_moe_config(bundle)
    base_path = _base_path(bundle, cfg)
    if not base_path.is_file():
        raise CheckpointError(f"{bundle}: base checkpoint not found at {base_path}")
    if file_sha256(base_path) != cfg.base_sha256:
        raise CheckpointError(
            f"{bundle}: base checkpoint {base_path} does not match the bundle's hash"
        )
    base = load_sam3d(base_path)
    experts = {}
    for name in cfg.experts:
        decoder, _ = load_expert(
            bundle / EXPERTS_DIR / name, base_sha256=cfg.base_sha256, config=base.config
        )
        experts[name] = decoder
    gate = Gate(config=GateConfig.from_dict(cfg.gate))
    try:
        gate.load_state_dict(load_file(str(bundle / "gate.safetensors")), strict=True)
    except Exception as err:  # safetensors and torch raise several types for bad files
        first = first_line(err)
        raise CheckpointError(f"{bundle / 'gate.safetensors'}: {first}") from None
    return MoESam3D(
        base=base, experts=experts, gate=gate, tau=cfg.tau, weighting=cfg.weighting
    ).eval()


def _rewrite_gate(bundle: Path, cfg: MoEConfig, experts: list[str], keep: list[int]) -> None:
    gate = Gate(config=GateConfig.from_dict(cfg.gate))
    gate.load_state_dict(load_file(str(bundle / "gate.safetensors")), strict=True)
    new = gate.resize(len(experts), keep=keep)
    with atomic_write(bundle / "gate.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in new.state_dict().items()}, str(tmp))
    report = {**cfg.train_report, "gate_needs_retraining": True}
    _write_config(
        bundle,
        MoEConfig(
            **{
                **asdict(cfg),
                "experts": experts,
                "gate": new.config.to_dict(),
                "train_report": report,
            }
        ),
    )


def add_expert(bundle: str | os.PathLike, expert_dir: str | os.PathLike) -> str:
    """Copy an expert into the bundle. Its gate output starts never-chosen: retrain the gate."""
    bundle, expert_dir = Path(bundle), Path(expert_dir)
    cfg = read_moe_config(bundle)
    info = read_expert_info(expert_dir)
    if info.base_sha256 != cfg.base_sha256:
        raise CheckpointError(
            f"expert {info.name!r} was trained on a different base than this bundle"
        )
    if info.name in cfg.experts:
        raise InputError(f"the bundle already has an expert named {info.name!r}")
    load_expert(expert_dir, base_sha256=cfg.base_sha256)  # validates the weights too
    shutil.copytree(
        expert_dir, bundle / EXPERTS_DIR / info.name, ignore=shutil.ignore_patterns("checkpoints")
    )
    _rewrite_gate(bundle, cfg, cfg.experts + [info.name], list(range(len(cfg.experts) + 1)))
    return info.name


def remove_expert(bundle: str | os.PathLike, name: str) -> None:
    bundle = Path(bundle)
    cfg = read_moe_config(bundle)
    if name not in cfg.experts:
        raise InputError(f"the bundle has no expert {name!r}; it has {cfg.experts}")
    if len(cfg.experts) == 1:
        raise InputError("cannot remove the last expert of a bundle")
    keep = [0] + [i + 1 for i, n in enumerate(cfg.experts) if n != name]
    _rewrite_gate(bundle, cfg, [n for n in cfg.experts if n != name], keep)
    shutil.rmtree(bundle / EXPERTS_DIR / name)
