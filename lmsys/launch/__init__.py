"""Launching runs: `local` (several JAX processes on one machine), `sweep` (trials over config
keys), `cluster` (SLURM jobs through submitit, TPU pod commands)."""
