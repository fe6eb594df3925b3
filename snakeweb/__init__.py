"""snakeweb: snake species identification on frozen DINOv2 embeddings.

The library holds all logic; `pipelines/` (command line) and `app.py` (dashboard) are thin views over it.
"""

from snakeweb.errors import SnakewebError
from snakeweb.threads import share_cores

share_cores()  # before torch or faiss start OpenMP: sleeping idle threads, pools sized to the cores granted

__all__ = ["SnakewebError"]
