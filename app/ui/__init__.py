"""The read-only dashboard at /ui: server-rendered pages over the same services as the API, opened with a
tenant's API key kept in a cookie (see app/ui/session.py)."""
