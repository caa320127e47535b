"""Adapters to the physical world: relay, LEDs, buttons, door sensor, cameras, systemd notification.

Imports domain, errors, ports and hardware only; the only importer of gpiozero and picamera2.
"""
