"""`make learn`: similarity-learning heads on FaceGate's fixed 128-d embeddings (issue 13), compared on one
identity-disjoint protocol over LFW View 2 and the door benchmark; numpy only, so the test venv runs it."""

import os

# One BLAS thread: the matrices here are small (128 x 128 heads, batches of 128), and on a shared 2-core
# machine OpenBLAS's threads made each training step about 5x slower. This only takes effect when numpy
# is first imported after it (`python -m models.build.learning`), and leaves a value already set alone.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
