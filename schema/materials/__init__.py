"""The materials slice: the catalogue, providers' offers and quotes (issue 9)."""
