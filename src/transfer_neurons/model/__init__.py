"""Models: per-architecture adapters, loading (folders, GGUF, hub ids) and the built-in models."""
