"""The sources half of configuration as code (DESIGN §9)."""
