"""One module per analysis: its config, `run(...) -> Result`, and the Result's save / load / summary lines."""
