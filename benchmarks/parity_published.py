"""Parity of medmoe's SAM-Med3D with the published implementation, on the same random weights.

Usage: ``python benchmarks/parity_published.py /path/to/SAM-Med3D`` (a checkout of
uni-medical/SAM-Med3D; nothing of it is shipped with medmoe). The published modules are imported
from that folder by file, a random ``vit_b_ori`` state dict is loaded strictly into both models,
and the image encoder (float64 and float32), the prompt encoder + mask decoder (float32: the
published prompt encoder casts coordinates to float32) are compared.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from medmoe.sam3d import build_sam3d

FILES = ("image_encoder3D", "prompt_encoder3D", "mask_decoder3D", "sam3D")


def load_published(root: Path):
    """Import the four published model files as a throw-away package ``pubsam``."""
    pkg_dir = Path(tempfile.mkdtemp()) / "pubsam"
    pkg_dir.mkdir()
    (pkg_dir / "__init__.py").write_text("")
    for name in FILES:
        (pkg_dir / f"{name}.py").write_text(
            (root / "segment_anything/modeling" / f"{name}.py").read_text()
        )
    sys.path.insert(0, str(pkg_dir.parent))
    mods = {n: importlib.import_module(f"pubsam.{n}") for n in FILES}
    return mods


def build_published(m):
    enc = m["image_encoder3D"].ImageEncoderViT3D(
        depth=12, embed_dim=768, img_size=128, mlp_ratio=4, num_heads=12, patch_size=16,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=[2, 5, 8, 11], window_size=14, out_chans=384,
    )  # fmt: skip
    pe = m["prompt_encoder3D"].PromptEncoder3D(
        embed_dim=384, image_embedding_size=(8, 8, 8), input_image_size=(128, 128, 128),
        mask_in_chans=16,
    )  # fmt: skip
    dec = m["mask_decoder3D"].MaskDecoder3D(
        num_multimask_outputs=3, transformer_dim=384, iou_head_depth=3, iou_head_hidden_dim=256
    )
    return m["sam3D"].Sam3D(image_encoder=enc, prompt_encoder=pe, mask_decoder=dec).eval()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("published", type=Path, help="checkout of uni-medical/SAM-Med3D")
    args = ap.parse_args()
    torch.set_num_threads(2)
    pub = build_published(load_published(args.published))
    ours = build_sam3d("vit_b_ori")
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=gen) * 0.02 for k, v in pub.state_dict().items()}
    pub.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    print(f"state dict entries: published {len(state)}, medmoe {len(ours.state_dict())}")
    x = torch.randn(1, 1, 128, 128, 128, generator=gen)
    for dtype in (torch.float64, torch.float32):
        pub.to(dtype)
        ours.to(dtype)
        with torch.no_grad():
            t0 = time.perf_counter()
            e_pub = pub.image_encoder(x.to(dtype))
            t1 = time.perf_counter()
            e_our = ours.image_encoder(x.to(dtype))
            t2 = time.perf_counter()
        print(
            f"{dtype}: encoder max rel diff {rel(e_our, e_pub):.2e} "
            f"(published {t1 - t0:.2f} s, medmoe {t2 - t1:.2f} s)"
        )
    pts = torch.tensor([[[64.0, 30.0, 90.0], [10.0, 100.0, 50.0]]])
    lab = torch.tensor([[1, 0]])
    mask = torch.randn(1, 1, 32, 32, 32, generator=gen)
    with torch.no_grad():
        sparse, dense = pub.prompt_encoder(points=[pts, lab], boxes=None, masks=mask)
        low_pub, iou_pub = pub.mask_decoder(
            image_embeddings=e_pub,
            image_pe=pub.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        low_our, iou_our = ours.decode(e_pub, points=(pts, lab), mask_input=mask)
    print(f"float32: decoder low-res logits max rel diff {rel(low_our, low_pub):.2e}")
    print(f"float32: iou prediction max rel diff {rel(iou_our, iou_pub):.2e}")


if __name__ == "__main__":
    main()
