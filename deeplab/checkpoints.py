"""DeepLab checkpoints, kept at this path for code outside the repository
(`deeplab.checkpoints.load_tf1_checkpoint`); the loaders live in `deeplab.training.checkpoints`."""

from deeplab.training.checkpoints import (  # noqa: F401
    LOGITS_PREFIX,
    LoadReport,
    assign_by_name,
    is_ignored,
    load_initial,
    load_tf1_checkpoint,
    load_weights,
    save_weights,
    tf1_variables,
)
