"""Models: one file per architecture, all registered in :mod:`detseg.models.zoo`."""
