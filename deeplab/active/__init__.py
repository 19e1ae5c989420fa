"""Active-learning algorithms in numpy: region kernels, superpixels, merge, acquisition,
annotation ledger and sieving. Never imports TensorFlow."""
