"""The HTTP layer: the Starlette app, its middleware and endpoints, TLS and the CLI."""
