"""The rules of the platform: pure Python, no strawberry and no HTTP."""
