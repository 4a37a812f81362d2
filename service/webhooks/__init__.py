"""Webhooks: endpoints operators register, signing, and the delivery worker."""
