"""The copy engine: applies the domain rules to brokers, and reports what happened."""
