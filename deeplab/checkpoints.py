"""DeepLab checkpoints (kept at this path for code outside the repository): the loaders live in
`deeplab.training.checkpoints`."""

from deeplab.training.checkpoints import *  # noqa: F401,F403
from deeplab.training.checkpoints import load_tf1_checkpoint  # noqa: F401
