"""Starlette endpoints, one per module."""
