"""Files a run writes and reads: atomic io, file names, neuron sets, manifests, the cache, figures, the report."""
