"""The intake: every channel's feedback through one pipeline (see pipeline.py)."""
