"""Data sets: descriptors, image/label reading, TFRecords, the synthetic street scenes."""

from deeplab.datasets.descriptors import DATASET_NAMES, DATASETS, DatasetDescriptor, Sample, get_dataset

__all__ = ["DATASET_NAMES", "DATASETS", "DatasetDescriptor", "Sample", "get_dataset"]
