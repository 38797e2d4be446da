"""``Sam3DPredictor``: encode a volume once, then predict masks from prompts many times."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from medmoe.errors import InputError, StateError
from medmoe.sam3d.sam import Sam3D
from medmoe.sam3d.upsample import upsample_logits, upsampled_mask


@dataclass(frozen=True)
class Sam3DPrediction:
    """Result of one prediction, in the model's input frame."""

    low_res_logits: Tensor  # (1, 1, S/4, S/4, S/4): feed back as ``mask_input`` on the next click
    mask: Tensor  # (1, 1, S, S, S) bool: ``logits > 0``, computed without the full upsampling
    iou: Tensor  # (1, 1): the decoder's predicted mask quality

    @cached_property
    def logits(self) -> Tensor:
        """``(1, 1, S, S, S)``: trilinear upsampling of ``low_res_logits``, computed on first
        use (the mask does not need it)."""
        return upsample_logits(self.low_res_logits, self.mask.shape[-1])


def as_float_tensor(value, *, name: str, shape: tuple[int, ...] | None, like: Tensor) -> Tensor:
    """Convert ``value`` to ``like``'s dtype/device, checking its shape and finiteness."""
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    if shape is not None and tuple(t.shape) != shape:
        raise InputError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    t = t.to(device=like.device, dtype=like.dtype)
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or Inf")
    return t


class Sam3DPredictor:
    """segment-anything-style predictor for :class:`Sam3D`.

    ``set_image`` takes a volume already preprocessed to the model's input convention (see
    :mod:`medmoe.data`) and runs the image encoder once; ``predict`` then runs only the prompt
    encoder, the mask decoder and the upsampling. Coordinates are voxel indices of the ``S^3``
    input volume in its tensor axis order (the published model's order).
    """

    def __init__(self, model: Sam3D) -> None:
        self.model = model.eval()
        self.size = model.config.img_size
        self._features: Tensor | None = None
        self._image_pe: Tensor | None = None

    @property
    def _param(self) -> Tensor:
        return next(self.model.parameters())

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    @property
    def features(self) -> Tensor:
        """The cached image embedding ``(1, C, n, n, n)``."""
        if self._features is None:
            raise StateError("no image is set: call set_image(volume) before predict()")
        return self._features

    @torch.inference_mode()
    def set_image(self, volume: Tensor | np.ndarray) -> None:
        """Encode ``volume`` (``(S, S, S)`` or ``(1, 1, S, S, S)`` float) and cache the embedding."""
        shape = tuple(volume.shape)
        s = self.size
        if shape not in ((s, s, s), (1, 1, s, s, s)):
            raise InputError(
                f"volume must have shape ({s}, {s}, {s}) or (1, 1, {s}, {s}, {s}), got {shape}"
            )
        if not (torch.is_floating_point(torch.as_tensor(volume[:0]))):
            raise InputError(f"volume must be a float array, got {volume.dtype}")
        x = as_float_tensor(volume, name="volume", shape=None, like=self._param).reshape(
            1, 1, s, s, s
        )
        self._features = self.model.image_encoder(x)
        self._image_pe = self.model.prompt_encoder.get_dense_pe()

    @torch.inference_mode()
    def embed_batch(self, volumes: Tensor | np.ndarray, *, batch_size: int = 1) -> Tensor:
        """Encode several crops ``(B, S, S, S)`` or ``(B, 1, S, S, S)`` -> ``(B, C, n, n, n)``,
        ``batch_size`` at a time (evaluation, full-volume windows). Pass ``features[i : i + 1]``
        to :meth:`set_embedding` to predict on crop ``i``; each row equals :meth:`set_image`'s
        embedding of that crop. On the 2-core CPU a batch of 2 measured about 10 % slower than
        two calls (the GEMMs already fill both cores), hence the default of 1; a GPU gains."""
        s = self.size
        if volumes.ndim not in (4, 5) or tuple(volumes.shape[-3:]) != (s, s, s):
            raise InputError(
                f"volumes must have shape (B, {s}, {s}, {s}), got {tuple(volumes.shape)}"
            )
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        x = as_float_tensor(volumes, name="volumes", shape=None, like=self._param)
        x = x.reshape(-1, 1, s, s, s)
        enc = self.model.image_encoder
        return torch.cat([enc(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])

    def set_embedding(self, features: Tensor) -> None:
        """Use an embedding computed elsewhere (by the same frozen encoder), e.g. shared by
        several predictors that compare decoders on one image."""
        n = self.model.config.img_size // self.model.config.patch_size
        if features.ndim != 5 or features.shape[0] != 1 or tuple(features.shape[2:]) != (n, n, n):
            raise InputError(
                f"features must have shape (1, C, {n}, {n}, {n}), got {tuple(features.shape)}"
            )
        self._features = features.to(self._param)
        self._image_pe = self.model.prompt_encoder.get_dense_pe()

    def reset_image(self) -> None:
        self._features = None
        self._image_pe = None

    def prompt_tensors(
        self, points=None, labels=None, box=None, mask_input=None
    ) -> tuple[tuple[Tensor, Tensor] | None, Tensor | None, Tensor | None]:
        """Validate prompts and batch them as the prompt encoder expects."""
        like = self._param
        pts = None
        if (points is None) != (labels is None):
            raise InputError("points and labels must be given together")
        if points is not None:
            coords = as_float_tensor(points, name="points", shape=None, like=like)
            if coords.ndim != 2 or coords.shape[1] != 3 or coords.shape[0] == 0:
                raise InputError(
                    f"points must have shape (N, 3) with N >= 1, got {tuple(coords.shape)}"
                )
            lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
            if tuple(lab.shape) != (coords.shape[0],):
                raise InputError(
                    f"labels must have shape ({coords.shape[0]},), got {tuple(lab.shape)}"
                )
            if not bool(((lab == 0) | (lab == 1)).all()):
                raise InputError("labels must be 1 (positive) or 0 (negative)")
            if bool(((coords < 0) | (coords > self.size - 1)).any()):
                raise InputError(f"points must lie inside the {self.size}^3 input frame")
            pts = (coords[None], lab.to(device=like.device, dtype=torch.long)[None])
        boxes = None
        if box is not None:
            boxes = as_float_tensor(box, name="box", shape=(6,), like=like)
            if bool((boxes[:3] > boxes[3:]).any()):
                raise InputError(
                    "box must be (x1, y1, z1, x2, y2, z2) with x1 <= x2, y1 <= y2, z1 <= z2"
                )
            if not self.model.prompt_encoder.supports_boxes:
                raise InputError("this model has no box embeddings; build a box-capable model")
            boxes = boxes[None]
        mask = None
        if mask_input is not None:
            low = self.model.config.low_res_size
            mask = as_float_tensor(
                mask_input, name="mask_input", shape=(1, 1, low, low, low), like=like
            )
        return pts, boxes, mask

    @torch.inference_mode()
    def predict(self, points=None, labels=None, box=None, mask_input=None) -> Sam3DPrediction:
        """Predict one mask from prompts; never re-runs the image encoder.

        Args:
            points: ``(N, 3)`` voxel coordinates in the input frame.
            labels: ``(N,)``; 1 positive, 0 negative.
            box: ``(6,)`` as ``(x1, y1, z1, x2, y2, z2)``, box-capable models only.
            mask_input: ``(1, 1, S/4, S/4, S/4)`` low-resolution logits of the previous click.
        """
        features = self.features
        pts, boxes, mask = self.prompt_tensors(points, labels, box, mask_input)
        low, iou = self.model.decode(
            features, points=pts, boxes=boxes, mask_input=mask, image_pe=self._image_pe
        )
        return Sam3DPrediction(low_res_logits=low, mask=upsampled_mask(low, self.size), iou=iou)
