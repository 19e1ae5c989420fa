"""TensorFlow: trainer (TrainConfig, make_optimizer, the loss, the gradient multipliers and the
step as small functions, the loop with resume), evaluate, inference (softmax at full
resolution), checkpoints (DeepLab's TF1 checkpoints and the .npz weights), export
(SavedModel), standin (the ImageNet stand-in backbone).

May import deeplab.model, deeplab.core, deeplab.datasets and io_utils/paths; never the AL
packages. The command lines keep DeepLab's names: `python -m deeplab.train`, `deeplab.eval`,
`deeplab.export_model`."""
