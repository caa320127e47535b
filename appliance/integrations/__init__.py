"""Links to other systems, each in its own process: the Home Assistant bridge over MQTT (`facegate mqtt`).

May import config, app (the door link), errors and the core; paho-mqtt only in mqtt_client.py.
"""
