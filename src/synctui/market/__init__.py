"""The seeded market simulator (and, later, the demo leader strategy)."""
