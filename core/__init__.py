"""The bottom layer: settings, errors, clock, calendar, policy and the vocabulary of roles,
steps and statuses. Imports nothing of ours (scripts/check_layers.py)."""
