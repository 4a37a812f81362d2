"""Helpers the tests share: throw-away servers they start and stop themselves."""
