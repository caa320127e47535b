"""Processes and wiring: the composition root (wiring.py), the facegate run process, the doctor.

May import any folder but evaluation; only cli and evaluation import it.
"""
