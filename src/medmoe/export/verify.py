"""Check an export folder against the torch model: the same inputs through both."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from medmoe.export.runtime import OnnxSam3D
from medmoe.sam3d import Sam3D


def rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest magnitude of ``want``."""
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


@torch.inference_mode()
def verify_export(
    folder: str | os.PathLike, *, model: Sam3D, moe: nn.Module | None = None, seed: int = 0
) -> dict[str, float]:
    """Relative differences of onnxruntime from torch on a seeded random volume and a click
    (two points and the previous mask), for the embedding, the decoders and the gate."""
    model = model.cpu().eval()
    s, low_s = model.config.img_size, model.config.low_res_size
    gen = torch.Generator().manual_seed(seed)
    volume = torch.randn(1, 1, s, s, s, generator=gen)
    mask = torch.randn(1, 1, low_s, low_s, low_s, generator=gen)
    pts = torch.tensor([[[s / 2, s / 2, s / 2], [s / 4, s / 2, s / 3]]])
    lab = torch.tensor([[1, 0]])
    prompts = {"points": pts[0].numpy(), "labels": lab[0].numpy(), "mask_input": mask.numpy()}
    rt = OnnxSam3D(folder)
    emb = model.image_encoder(volume)
    out = {"image embedding": rel_diff(rt.embed(volume.numpy()), emb.numpy())}
    emb_np = emb.numpy()
    low, _ = model.decode(emb, points=(pts, lab), mask_input=mask)
    out["low-res logits"] = rel_diff(rt.decode(emb_np, **prompts)[0], low.numpy())
    if moe is not None:
        sparse, dense = model.prompt_encoder((pts, lab), None, mask)
        pe = model.prompt_encoder.get_dense_pe()
        probs = moe.gate(emb, pe, sparse)
        out["gate probabilities"] = rel_diff(rt.gate(emb_np, **prompts), probs.numpy())
        for entry in rt.manifest["moe"]["experts"]:
            want, _ = moe.experts[entry["name"]](emb, pe, sparse, dense)
            got, _ = rt.decode(emb_np, decoder=entry["file"], **prompts)
            out[f"expert {entry['name']} logits"] = rel_diff(got, want.numpy())
    return out
