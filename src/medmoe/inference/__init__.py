"""Inference beyond one crop."""

from medmoe.inference.full_volume import FullVolumeResult, segment_full_volume

__all__ = ["FullVolumeResult", "segment_full_volume"]
