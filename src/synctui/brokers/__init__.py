"""Brokers behind one small interface; the simulated broker stands in for real ones."""
