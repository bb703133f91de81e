"""Every transport by name: what callers look up instead of branching on names.

Adding a transport is one module, one line here and its tests (and, for a
batch transport, its choice on FeedbackConfig.Transport).
"""

from sources.outbound.payloads import BuildError
from sources.transports import BatchTransport, HttpTransport, TransportError
from sources.transports.email import EmailTransport
from sources.transports.form import FormTransport
from sources.transports.ftp import FtpsTransport, FtpTransport
from sources.transports.json import JsonTransport
from sources.transports.query import QueryTransport
from sources.transports.s3 import S3Transport
from sources.transports.sftp import SftpTransport
from sources.transports.soap import SoapTransport
from sources.transports.xml import XmlTransport

# FeedbackConfig.method -> the class that builds its requests.
METHODS: dict[str, type[HttpTransport]] = {
    "query": QueryTransport,
    "form": FormTransport,
    "json": JsonTransport,
    "xml": XmlTransport,
    "soap": SoapTransport,
}

# FeedbackConfig.batch_transport -> the class that puts its files.
TRANSPORTS: dict[str, type[BatchTransport]] = {
    "ftp": FtpTransport,
    "ftps": FtpsTransport,
    "sftp": SftpTransport,
    "email": EmailTransport,
    "s3": S3Transport,
}


def http_transport(method: str) -> type[HttpTransport]:
    """The class of an outbound method; BuildError for a name it does not know."""
    try:
        return METHODS[method]
    except KeyError:
        raise BuildError(f"Unknown method {method!r}.") from None


def batch_transport(name: str) -> type[BatchTransport]:
    """The class of a batch transport; a permanent TransportError for a name it
    does not know (a config saved without one)."""
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise TransportError(
            f"The config has no batch transport ({name!r}).", permanent=True
        ) from None
