"""Export of SAM-Med3D and SAM-Med3D-MoE to ONNX (``medmoe export onnx``), and a small
onnxruntime wrapper to run the result. Needs the optional ``onnx`` extra."""

from medmoe.export.exporter import MANIFEST, export_onnx
from medmoe.export.runtime import OnnxSam3D, prompt_arrays

__all__ = ["MANIFEST", "OnnxSam3D", "export_onnx", "prompt_arrays"]
