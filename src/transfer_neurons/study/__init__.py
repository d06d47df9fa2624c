"""A whole study from one config: typed config, resumable hashed steps, the runner."""
