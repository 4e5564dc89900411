"""Persistence: tortoise models, the object store, envelope encryption, backups."""
