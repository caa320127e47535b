"""Faces in pixels: MTCNN detection, tracking, alignment, embedding, images, TFLite adapter, model files.

Imports domain, errors, ports and vision only; vision/inference.py alone imports the TFLite runtime.
"""
