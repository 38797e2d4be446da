"""medmoe: Mixture-of-Experts medical image segmentation that learns new tasks without forgetting."""

from medmoe.errors import MedmoeError

__version__ = "0.1.0"

__all__ = ["MedmoeError", "__version__"]
