"""`python -m transfer_neurons.cli` (as torchrun launches it) runs the command line."""

from transfer_neurons.cli import main

main()
