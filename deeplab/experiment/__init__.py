"""One active-learning job on disk: config (its settings), job (layout, manifests, the checked
ledger), ledger (the file's schema and its one row builder), region_maps, cache, tasks (every
per-image function an executor maps), stages (a round's stages in order: regions, select,
annotate, data, train, eval), results, compare (the comparison's tables and properties).

May import deeplab.active, deeplab.datasets, deeplab.parallel, deeplab.viz and io_utils/paths;
deeplab.training and deeplab.model only inside the train/eval/regions stages (lazily, so that
everything else runs without TensorFlow). Never deeplab.annotate."""
