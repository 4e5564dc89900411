"""The strawberry schema: types, inputs, permission classes and extensions."""
