"""Running a model with hooks: capture of states, interventions, generation, data parallelism."""
