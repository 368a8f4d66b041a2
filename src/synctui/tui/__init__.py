"""The Textual app: the only package that imports Textual. It observes the
engine and sends it commands; every rule lives below it."""
