"""The catalogue's API: the list of a customer's rewards (R11)."""
