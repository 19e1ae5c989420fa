"""Data sets: descriptors, image/label reading, TFRecords, the synthetic street scenes.

Imports none of the active-learning packages (only io_utils, paths and parallel)."""

from deeplab.datasets.descriptors import (
    DATASET_NAMES,
    DATASETS,
    DatasetDescriptor,
    Sample,
    get_dataset,
)

__all__ = ["DATASET_NAMES", "DATASETS", "DatasetDescriptor", "Sample", "get_dataset"]
