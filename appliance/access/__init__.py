"""The door decision: quality gate, 1:N match, k-of-n policy, door timing, enrolment, the door loop.

Imports domain, errors, ports, access and liveness/decision.py only: no cv2, SQLite, TFLite, GPIO or sockets.
"""
