"""Measuring and trying FaceGate: accuracy runners, metrics, plots, the bench, the demo, sample input.

May import any folder; only cli (and models/build, for sample photos) imports it.
"""
