"""ASGI middleware, one idea per module, in the order web/app.py stacks them."""
