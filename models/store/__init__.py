"""The model store: safetensors + tokenizer files per model under ``METERWAY_HOME/models``."""
