"""Model classes of the example service: what a team writes, and nothing else."""
