"""Webhooks to the seller's own systems (DESIGN §11).

Endpoints, the events sent to them, and each message's attempts.
"""
