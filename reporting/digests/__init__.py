"""Source digests (DESIGN §11).

A scheduled summary of a source's feedback, sent by email or its batch transport.
"""
