"""The SQLite gallery: schema and migrations (schema.py); users, templates, audit log (store.py).

Imports domain, errors and gallery only; the only importer of sqlite3 and sqlite_utils.
"""
