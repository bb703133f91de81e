"""A source's status (DESIGN §11): pausing and resuming it, with audit rows."""
