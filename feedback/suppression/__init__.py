"""Suppression lists (DESIGN §11): digests of returned contacts, and the check."""
