"""Several doors, one set of users: sealed change records (records.py) and `facegate sync` (sync.py).

May import config, gallery (its replica tables), integrations (the MQTT connection), errors and the core.
"""
