"""One model shared by every session: encode a crop, decode prompts against an embedding.

The predictor keeps one embedding as state, so decodes are serialised by a lock (a decode costs
milliseconds). Encodes go through a second predictor on the same frozen weights, under their own
lock, so one session's encoder run does not hold up the clicks of the others.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from medmoe.sam3d import Sam3DPredictor


@dataclass(frozen=True)
class Decoded:
    """One prediction in crop space, with the routing the page shows."""

    mask: np.ndarray  # (S, S, S) bool
    low_res_logits: Tensor  # fed back as mask_input on the next click
    iou: float
    expert: str  # "general" or the name of the expert whose mask was used
    s_top: float | None  # the gate's top-1 expert score (MoE only)
    gate_probs: dict[str, float] | None  # "none" then each expert (MoE only)


class Engine:
    def __init__(self, *, predictor: Sam3DPredictor) -> None:
        self.predictor = predictor
        self.encoder = Sam3DPredictor(predictor.model)  # same weights, its own embedding slot
        self.is_moe = hasattr(predictor, "moe")
        self.expert_names: list[str] = list(predictor.moe.expert_names) if self.is_moe else []
        self.size = predictor.size
        self.supports_boxes = bool(predictor.model.prompt_encoder.supports_boxes)
        self._encode_lock = threading.Lock()
        self._decode_lock = threading.Lock()
        self.encoder_seconds: list[float] = []

    def encode(self, image: np.ndarray) -> Tensor:
        with self._encode_lock:
            start = time.perf_counter()
            self.encoder.set_image(image)
            features = self.encoder.features
            self.encoder.reset_image()
            self.encoder_seconds.append(time.perf_counter() - start)
        return features

    def decode(
        self,
        features: Tensor,
        *,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: Tensor | None,
    ) -> Decoded:
        with self._decode_lock:
            self.predictor.set_embedding(features)
            pred = self.predictor.predict(
                points=points, labels=labels, box=box, mask_input=mask_input
            )
            self.predictor.reset_image()
        mask = pred.mask[0, 0].cpu().numpy()
        iou = float(pred.iou.reshape(-1)[0])
        if not self.is_moe:
            return Decoded(mask, pred.low_res_logits, iou, "general", None, None)
        names = ["none", *self.expert_names]
        probs = {n: float(p) for n, p in zip(names, pred.gate_probs.tolist(), strict=True)}
        expert = pred.expert_name if pred.used_expert else "general"
        return Decoded(mask, pred.low_res_logits, iou, expert, pred.s_top, probs)

    def swap(self, predictor: Sam3DPredictor) -> None:
        """Decode with ``predictor`` (a MoE on the same base: new experts and gate) from the
        next click on. The encoder stays, so cached embeddings and open sessions stay valid."""
        if predictor.model is not self.predictor.model:
            raise ValueError("swap needs a predictor on the served base model")
        with self._decode_lock:
            self.predictor = predictor
            self.is_moe = hasattr(predictor, "moe")
            self.expert_names = list(predictor.moe.expert_names) if self.is_moe else []

    def describe(self) -> dict:
        return {
            "model": "moe" if self.is_moe else "sam3d",
            "experts": self.expert_names,
            "tau": float(self.predictor.moe.tau) if self.is_moe else None,
            "crop_size": self.size,
            "supports_boxes": self.supports_boxes,
        }


class EmbeddingLRU:
    """Crop embeddings by key (image and crop position), least recently used dropped first.
    A value is whatever ``encode`` returns: an embedding, or a crop with its embedding.

    Requests for a key that is being encoded wait for that encoder run instead of starting a
    second one, so concurrent clicks on a new crop still run the encoder once.
    """

    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._pending: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, encode: Callable[[], Any]) -> tuple[Any, bool]:
        """``(value, encoded)``: the cached value, or ``encode()``'s (then cached)."""
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key], False
                pending = self._pending.get(key)
                if pending is None:
                    mine = self._pending[key] = threading.Lock()
                    mine.acquire()
                    break
            with pending:  # another request is encoding this crop: wait for it, then look again
                pass
        try:
            features = encode()
            with self._lock:
                self._items[key] = features
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
            return features, True
        finally:
            with self._lock:
                del self._pending[key]
            mine.release()
