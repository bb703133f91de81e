"""The demo: seed data (`manage.py seed_demo`) and the pretend source its
configs forward to (receiver.py, mounted only when LEADBACK_DEMO_RECEIVER is on)."""
