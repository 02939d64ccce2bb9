"""The model zoo's figures and weights: what ``detseg zoo list | bench | build`` do.

- :mod:`detseg.zoo.figures`: the figures file (``figures.json`` beside this module), each figure with
  how it was obtained (command, date, machine, commit);
- :mod:`detseg.zoo.measure`: parameters, GFLOPs and CPU milliseconds of a model, measured here;
- :mod:`detseg.zoo.table`: the lecture's model-zoo table from the registry and the figures;
- :mod:`detseg.zoo.build`: recipes that train a zoo entry's weights offline (generated or local data)
  and cache them in ``$DETSEG_HOME`` (default ``~/.cache/detseg``)/zoo.
"""
