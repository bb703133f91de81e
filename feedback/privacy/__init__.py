"""Erasure of a person's data and the retention of personal data (DESIGN §12)."""
