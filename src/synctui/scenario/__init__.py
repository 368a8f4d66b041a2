"""Scenario files: the pydantic model, the headless runner and the JSON report."""
