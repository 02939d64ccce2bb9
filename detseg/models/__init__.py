"""Models: one file per architecture, each registered in :mod:`detseg.models.registry`; built by name
with their weights by :func:`detseg.models.zoo.create_model`."""
