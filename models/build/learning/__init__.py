"""`make learn`: similarity-learning heads on FaceGate's fixed 128-d embeddings (issue 13), compared on one
identity-disjoint protocol over LFW View 2 and the door benchmark; numpy only, so the test venv runs it."""
