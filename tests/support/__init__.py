"""Helpers the tests share: the application they drive over HTTP (`application`, its
fixtures), throw-away servers they start and stop themselves."""
