"""snakeweb: snake species identification on frozen DINOv2 embeddings.

The library holds all logic; `pipelines/` (command line) and `app.py` (dashboard) are thin views over it.
"""

from snakeweb.errors import SnakewebError

__all__ = ["SnakewebError"]
