"""The SAM-Med3D prompt encoder: points, boxes and a low-resolution mask prompt.

Coordinates are voxel indices of the model's input volume, in the tensor's axis order
(``(B, 1, X, Y, Z)`` -> a point is ``(x, y, z)`` = indices into dims 2, 3, 4), as in the
published model.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn

from medmoe.sam3d.common import LayerNorm3d


class PositionEmbeddingRandom3D(nn.Module):
    """Random-Fourier positional encoding with a ``(3, dim/3)`` Gaussian matrix (a buffer).

    Features are ``[sin, cos, sin]`` of ``2 pi (2 u - 1) G``, for coordinates ``u`` in [0, 1]
    (the published encoding repeats ``sin``; the width is ``3 * num_pos_feats``).
    """

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(3, num_pos_feats))

    def _encode(self, coords: Tensor) -> Tensor:
        # in float32 even under bf16 autocast: 2 pi times a projection of |u| up to ~10 is a
        # phase of tens of radians, which bf16's 8 bits turn into errors of order 0.1
        kind = coords.device.type
        off = (
            torch.autocast(device_type=kind, enabled=False)
            if kind in ("cuda", "cpu")
            else contextlib.nullcontext()
        )
        with off:
            g = self.positional_encoding_gaussian_matrix
            coords = (2 * coords.to(g.dtype) - 1) @ g
            coords = 2 * math.pi * coords
            return torch.cat([torch.sin(coords), torch.cos(coords), torch.sin(coords)], dim=-1)

    def forward(self, size: tuple[int, int, int]) -> Tensor:
        """Dense encoding of a grid: ``(C, X, Y, Z)``.

        As published, the first two coordinate axes are swapped: the dense encoding at grid cell
        ``(i, j, k)`` encodes the normalised point ``((j + .5) / Y, (i + .5) / X, (k + .5) / Z)``,
        so a point prompt at token ``(i, j, k)`` matches the dense encoding at ``(j, i, k)``.
        Checkpoints were trained with this; it is reproduced on purpose.
        """
        x, y, z = size
        g = self.positional_encoding_gaussian_matrix
        grid = torch.ones((x, y, z), device=g.device, dtype=g.dtype)
        along0 = (grid.cumsum(dim=0) - 0.5) / y
        along1 = (grid.cumsum(dim=1) - 0.5) / x
        along2 = (grid.cumsum(dim=2) - 0.5) / z
        pe = self._encode(torch.stack([along1, along0, along2], dim=-1))
        return pe.permute(3, 0, 1, 2)

    def forward_with_coords(self, coords: Tensor, image_size: tuple[int, int, int]) -> Tensor:
        """Encode ``(B, N, 3)`` voxel coordinates (already shifted by +0.5) of an input volume."""
        scale = coords.new_tensor(image_size)
        g = self.positional_encoding_gaussian_matrix
        return self._encode((coords / scale).to(g.dtype))


class PromptEncoder3D(nn.Module):
    """Embeds prompts into sparse tokens ``(B, N, dim)`` and a dense map ``(B, dim, n, n, n)``."""

    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: tuple[int, int, int],
        input_image_size: tuple[int, int, int],
        mask_in_chans: int,
        box_embeddings: bool = False,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 3)
        # 0: negative point, 1: positive point, (2, 3): box corners in box-capable variants.
        n_embeddings = 4 if box_embeddings else 2
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(n_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans // 4),
            activation(),
            nn.Conv3d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans),
            activation(),
            nn.Conv3d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    @property
    def supports_boxes(self) -> bool:
        return len(self.point_embeddings) == 4

    def get_dense_pe(self) -> Tensor:
        """``(1, dim, n, n, n)`` positional encoding of the image-embedding grid."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        points = points + 0.5  # centre of the voxel
        if pad:  # with no box, a "not a point" token is appended (as published)
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 3)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
        emb = emb + (labels == 0) * self.point_embeddings[0].weight
        emb = emb + (labels == 1) * self.point_embeddings[1].weight
        return emb

    def _embed_boxes(self, boxes: Tensor) -> Tensor:
        if not self.supports_boxes:
            raise ValueError("this model has no box embeddings (use a box-capable model)")
        corners = (boxes + 0.5).reshape(-1, 2, 3)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_embed = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return emb + corner_embed

    def forward(
        self,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        masks: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Embed prompts.

        Args:
            points: ``(coords (B, N, 3), labels (B, N))``; label 1 positive, 0 negative, -1 pad.
            boxes: ``(B, 6)`` as ``(x1, y1, z1, x2, y2, z2)``.
            masks: ``(B, 1, 4n, 4n, 4n)`` low-resolution logits of a previous prediction.

        Returns:
            sparse ``(B, N', dim)`` and dense ``(B, dim, n, n, n)`` embeddings.
        """
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        weight = self.no_mask_embed.weight
        sparse = weight.new_empty((bs, 0, self.embed_dim))
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], 1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = weight.reshape(1, -1, 1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return sparse, dense
