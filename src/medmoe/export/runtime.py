"""Running an export folder with onnxruntime (CPU): the counterpart of ``Sam3DPredictor``.

Used by the parity tests and by ``benchmarks/sam3d_speed.py --runtime onnx``; it needs only
numpy and onnxruntime, as a deployment without torch would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from medmoe.errors import InputError


def prompt_arrays(
    *, points=None, labels=None, box=None, mask_input=None, low_res: int
) -> dict[str, np.ndarray]:
    """The prompt inputs of the decoder graphs, tokens in ``PromptEncoder3D``'s order.

    Points (``(N, 3)`` voxel coordinates, labels 1/0) come first; then, with no box, one "not a
    point" token (label -1), or with a box ``(x1, y1, z1, x2, y2, z2)`` its two corners (labels
    2 and 3). ``mask_input`` is the previous ``(1, 1, s, s, s)`` low-resolution logits.
    """
    coords: list[np.ndarray] = []
    labs: list[float] = []
    if points is not None:
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        lab = np.asarray(labels, dtype=np.float32).reshape(-1)
        if len(lab) != len(pts):
            raise InputError(f"{len(pts)} points but {len(lab)} labels")
        coords.append(pts)
        labs += lab.tolist()
    if box is not None:
        corners = np.asarray(box, dtype=np.float32).reshape(2, 3)
        coords.append(corners)
        labs += [2.0, 3.0]
    elif points is not None:
        coords.append(np.zeros((1, 3), np.float32))
        labs.append(-1.0)
    if not coords:
        raise InputError("the ONNX decoder needs at least one point or a box")
    has = mask_input is not None
    mask = (
        np.asarray(mask_input, dtype=np.float32).reshape(1, 1, low_res, low_res, low_res)
        if has
        else np.zeros((1, 1, low_res, low_res, low_res), np.float32)
    )
    return {
        "point_coords": np.concatenate(coords)[None],
        "point_labels": np.asarray(labs, np.float32)[None],
        "mask_input": mask,
        "has_mask_input": np.asarray([1.0 if has else 0.0], np.float32),
    }


class OnnxSam3D:
    """onnxruntime sessions over an export folder (see :mod:`medmoe.export.exporter`)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        int8: bool = False,
        threads: int | None = None,
        spin: bool = True,
    ) -> None:
        """``threads``: onnxruntime's intra-op threads (its default: one per core). ``spin``:
        whether those threads spin between calls (onnxruntime's default, the lowest latency);
        ``False`` in a process that also runs torch, whose calls would share the cores with
        the spinning threads (``benchmarks/sam3d_speed.py --runtime onnx`` measured a torch
        click 3x slower beside them)."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("running ONNX needs onnxruntime: pip install 'medmoe[onnx]'") from None
        self.folder = Path(folder)
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            raise InputError(f"{self.folder} is not an ONNX export folder (no manifest.json)")
        self.manifest = json.loads(manifest.read_text())
        cfg = self.manifest["model_config"]
        self.low_res = cfg["img_size"] // cfg["patch_size"] * 4  # Sam3DConfig.low_res_size
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self._ort, self._opts, self._sessions = ort, opts, {}
        self.encoder_file = "image_encoder.int8.onnx" if int8 else "image_encoder.onnx"
        if self.encoder_file not in self.manifest["files"]:
            raise InputError(
                f"{self.folder} has no {self.encoder_file} (export with --quantize int8)"
            )

    def session(self, name: str):
        if name not in self.manifest["files"]:
            raise InputError(f"{self.folder} has no {name}")
        if name not in self._sessions:
            self._sessions[name] = self._ort.InferenceSession(
                str(self.folder / name), self._opts, providers=["CPUExecutionProvider"]
            )
        return self._sessions[name]

    def embed(self, volume: np.ndarray) -> np.ndarray:
        """``(S, S, S)`` or ``(1, 1, S, S, S)`` float volume -> ``(1, C, n, n, n)``."""
        s = self.manifest["model_config"]["img_size"]
        vol = np.ascontiguousarray(np.asarray(volume, np.float32).reshape(1, 1, s, s, s))
        return self.session(self.encoder_file).run(None, {"volume": vol})[0]

    def decode(
        self, embedding: np.ndarray, *, decoder: str = "prompt_decoder.onnx", **prompts
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(low_res_logits (1, 1, s, s, s), iou (1, 1))`` for ``points``/``labels``/``box``/
        ``mask_input`` (see :func:`prompt_arrays`)."""
        feed = prompt_arrays(low_res=self.low_res, **prompts)
        feed["image_embeddings"] = embedding
        low, iou = self.session(decoder).run(None, feed)
        return low, iou

    def gate(self, embedding: np.ndarray, **prompts) -> np.ndarray:
        """Gate probabilities ``(1, m + 1)`` of an exported MoE."""
        feed = prompt_arrays(low_res=self.low_res, **prompts)
        feed = {
            "image_embeddings": embedding,
            **{k: feed[k] for k in ("point_coords", "point_labels")},
        }
        return self.session("gate.onnx").run(None, feed)[0]
