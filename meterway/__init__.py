"""meterway's shared vocabulary: the error hierarchy (``errors``), the typed settings (``settings``), the
database handle (``db``), the one table metadata (``tables``) and tolerated-error accounting (``failures``).

The bottom layer. Every other package (``service``, ``models``, ``billing``) may import it;
it imports nothing else of the project (``tests/test_layers.py`` holds that rule).
"""
