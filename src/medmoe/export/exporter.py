"""Writing SAM-Med3D and SAM-Med3D-MoE as ONNX graphs, with a JSON manifest beside them.

Layout of an export folder::

    manifest.json              what each file is, its inputs and outputs, the model config
    image_encoder.onnx         volume -> image_embeddings
    image_encoder.int8.onnx    (only with quantize="int8") the same, dynamically quantised
    prompt_decoder.onnx        prompts + embedding -> low_res_logits, iou (the general decoder)
    gate.onnx                  (MoE) prompts + embedding -> gate_probs
    experts/<name>.onnx        (MoE) prompts + embedding -> low_res_logits, iou of each expert

The prompt inputs are described in :mod:`medmoe.export.graphs`. The number of prompt tokens is a
dynamic axis. Export runs on the CPU with the TorchScript-based exporter (it needs only the
``onnx`` package).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from medmoe.errors import InputError
from medmoe.export.graphs import EncoderGraph, GateGraph, PromptDecoderGraph
from medmoe.sam3d import Sam3D
from medmoe.utils.files import atomic_write

FORMAT = "medmoe-onnx/1"
MANIFEST = "manifest.json"
OPSET = 17
QUANTIZE = ("int8",)

PROMPT_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]
GATE_INPUTS = PROMPT_INPUTS[:3]
DECODER_OUTPUTS = ["low_res_logits", "iou"]
_DYNAMIC = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}


def require_onnx() -> None:
    """Raise an :class:`InputError` with the install hint when ``onnx`` is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise InputError("ONNX export needs the onnx package: pip install 'medmoe[onnx]'") from None


def example_inputs(model: Sam3D, num_points: int = 2) -> dict[str, torch.Tensor]:
    """Inputs of the right shapes and dtypes for tracing (values do not matter)."""
    cfg = model.config
    n, low = cfg.grid_size, cfg.low_res_size
    return {
        "image_embeddings": torch.zeros(1, cfg.prompt_dim, n, n, n),
        "point_coords": torch.full((1, num_points, 3), cfg.img_size / 2),
        "point_labels": torch.tensor([[1.0] + [-1.0] * (num_points - 1)]),
        "mask_input": torch.zeros(1, 1, low, low, low),
        "has_mask_input": torch.zeros(1),
    }


def _export(
    module: nn.Module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
) -> None:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes
        with atomic_write(path) as tmp:
            torch.onnx.export(
                module.eval(),
                args,
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes={k: v for k, v in _DYNAMIC.items() if k in inputs},
            )


def export_encoder(model: Sam3D, path: Path) -> None:
    s = model.config.img_size
    volume = torch.zeros(1, 1, s, s, s)
    _export(
        EncoderGraph(encoder=model.image_encoder), (volume,), path, ["volume"], ["image_embeddings"]
    )


def export_decoder(model: Sam3D, decoder: nn.Module, path: Path) -> None:
    graph = PromptDecoderGraph(prompt_encoder=model.prompt_encoder, decoder=decoder)
    args = tuple(example_inputs(model).values())
    _export(graph, args, path, PROMPT_INPUTS, DECODER_OUTPUTS)


def export_gate(model: Sam3D, gate: nn.Module, path: Path) -> None:
    graph = GateGraph(prompt_encoder=model.prompt_encoder, gate=gate)
    args = tuple(example_inputs(model).values())[:3]
    _export(graph, args, path, GATE_INPUTS, ["gate_probs"])


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the weights of ``src`` (onnxruntime's quantize_dynamic)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise InputError("--quantize needs onnxruntime: pip install 'medmoe[onnx]'") from None
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime advises "pre-processing" on the root logger
    try:
        with atomic_write(dst) as tmp:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def _io(inputs: list[str], outputs: list[str]) -> dict:
    return {"inputs": inputs, "outputs": outputs}


def export_onnx(
    out_dir: str | os.PathLike,
    *,
    model: Sam3D,
    moe: nn.Module | None = None,
    quantize: str | None = None,
) -> dict:
    """Export ``model`` (or the MoE ``moe`` whose base it is) to ``out_dir``; returns the manifest.

    The manifest is written last, so its presence means the export is complete.
    """
    if quantize is not None and quantize not in QUANTIZE:
        raise InputError(f"unknown quantisation {quantize!r}; use {', '.join(QUANTIZE)}")
    require_onnx()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    model = model.cpu().eval()
    files: dict[str, dict] = {}
    export_encoder(model, out / "image_encoder.onnx")
    files["image_encoder.onnx"] = _io(["volume"], ["image_embeddings"])
    if quantize == "int8":
        quantize_int8(out / "image_encoder.onnx", out / "image_encoder.int8.onnx")
        files["image_encoder.int8.onnx"] = _io(["volume"], ["image_embeddings"])
    export_decoder(model, model.mask_decoder, out / "prompt_decoder.onnx")
    files["prompt_decoder.onnx"] = _io(PROMPT_INPUTS, DECODER_OUTPUTS)
    manifest = {
        "format": FORMAT,
        "opset": OPSET,
        "model_config": model.config.to_dict(),
        "files": files,
        "prompt_labels": {"positive": 1, "negative": 0, "not_a_point": -1, "box_corners": [2, 3]},
        "postprocess": "trilinear upsampling (align_corners=False) of low_res_logits, then > 0",
    }
    if moe is not None:
        manifest["moe"] = _export_moe_parts(moe.cpu().eval(), out, files)
    with atomic_write(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def _export_moe_parts(moe: nn.Module, out: Path, files: dict) -> dict:
    export_gate(moe.base, moe.gate, out / "gate.onnx")
    files["gate.onnx"] = _io(GATE_INPUTS, ["gate_probs"])
    experts = []
    for name, decoder in moe.experts.items():
        rel = f"experts/{name}.onnx"
        export_decoder(moe.base, decoder, out / rel)
        files[rel] = _io(PROMPT_INPUTS, DECODER_OUTPUTS)
        experts.append({"name": name, "file": rel})
    return {
        "gate": "gate.onnx",
        "general_decoder": "prompt_decoder.onnx",
        "experts": experts,  # gate order: gate index i >= 1 is experts[i - 1]
        "tau": moe.tau,
        "weighting": moe.weighting,
        "rule": "s_top = max(gate_probs[1:]); if s_top > tau: (1 - w) general + w expert "
        "with w from the weighting (s_top: w = s_top), else general",
    }
