"""The audit log (DESIGN §12): who exported personal data and who changed the
configuration, when, and from which address.

`context` holds the request's actor and client address for the duration of a
request or a command; `services` writes the rows (`audit_record` and the helpers
built on it) and expires them (`audit_expire`, the only deletion); `selectors`
reads them. The package sits low in `feedback` so every interface, the
configuration import and the key services can record.
"""
