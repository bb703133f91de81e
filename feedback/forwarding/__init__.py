"""Forwarding feedback to sources (DESIGN §5): notifications, batch files, and
the engine that claims, sends and retries them."""
