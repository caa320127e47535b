"""Liveness (presentation-attack detection): is the tracked face a live person, not a print or a screen?

Imports domain and liveness only; decision.py is pure (no cv2), cues.py and check.py measure images.
"""
