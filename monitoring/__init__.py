"""Watching feedback and acting on it (DESIGN §11).

Monitors, their alerts, and the actions an alert runs.
"""
