"""The accounts slice of the GraphQL schema: its types (types.py) and operations (operations.py)."""
