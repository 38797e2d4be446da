"""Small shared utilities: atomic file writes, hashing, seeding."""

from medmoe.utils.files import atomic_write, file_sha256
from medmoe.utils.seed import seed_everything

__all__ = ["atomic_write", "file_sha256", "seed_everything"]
