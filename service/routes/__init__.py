"""Route modules: each handler decodes, calls one service function, encodes."""
