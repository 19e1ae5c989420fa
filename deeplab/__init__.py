"""DeepLabv3+ and adaptive-superpixel active learning (Kim et al., ICCV 2023) on TensorFlow 2.

Importing `deeplab`, `deeplab.active`, `deeplab.experiment`, `deeplab.annotate` or `deeplab.viz`
does not import TensorFlow; only deeplab.training, the model and the input pipeline do.
"""

import os as _os

# Quieter TensorFlow start-up logs (a user setting wins).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
