"""Pydantic request and response models of the JSON API, one module per area."""
