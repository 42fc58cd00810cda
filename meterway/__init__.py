"""meterway's shared vocabulary: the error hierarchy, the typed settings and the database handle.

The bottom layer. Every other package (``service``, ``models``, ``billing``) may import it;
it imports nothing else of the project (``tests/test_layers.py`` holds that rule).
"""
