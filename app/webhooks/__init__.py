"""Webhooks: tenants register URLs; a job's end is POSTed to them, signed (Standard Webhooks), from an outbox."""
