"""Thin resolvers: read arguments, call one domain function, return a type."""
