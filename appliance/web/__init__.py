"""The web admin page (`facegate web`): users, enrolment from photos, events and status over HTTP.
Imports config, gallery, access, vision and app; only web/server.py imports the web framework."""
