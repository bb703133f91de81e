from reporting.digests.admin import DigestAdmin

__all__ = ["DigestAdmin"]
