"""The pictures: overlays (what a round asked and sieved, how the merge changed the regions),
plots (the AL curve, the comparison plot), views (the annotation page's region views).

Draws arrays: imports only deeplab.datasets (colours) and io_utils, so that the job's tasks
and the page both use it."""
