"""The method as pure functions of arrays, one module per section of docs/method.md:
superpixels (base maps), regions (region statistics and kernels), adaptive (the merge),
acquisition (scores, eligibility, the pool, the budget, cost models), oracle (the simulated
annotator), labels (painting answers, a round's labels), sieving, metrics, review.

No disk, no TensorFlow, nothing of the project outside deeplab.active: every test of it is an
array test (numpy, scikit-image, OpenCV, kneed)."""
