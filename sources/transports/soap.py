"""SOAP method: an operation's envelope, built by zeep from the loaded WSDL.

The zeep glue (loading WSDLs through the guard, building envelopes, reading
replies) is in outbound/soap.py; this class is the method's place among the
others.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sources.outbound import soap
from sources.outbound.payloads import BuildError
from sources.outbound.types import OutboundRequest
from sources.transports import ConfigProblems, HttpTransport

if TYPE_CHECKING:
    from zeep import Client

    from sources.models import FeedbackConfig


class SoapTransport(HttpTransport):
    name = "soap"
    http_method = "POST"
    wsse = True

    @classmethod
    def config_problems(cls, config: "FeedbackConfig") -> ConfigProblems:
        if not config.soap_operation:
            return [("soap_operation", "A SOAP config needs the operation to call.")]
        return []

    def build(
        self,
        fields: Sequence[tuple[str, str]],
        *,
        now: datetime,
        soap_client: "Client | None" = None,
    ) -> OutboundRequest:
        """The POST to the WSDL's service address; needs the loaded WSDL:
        pass `soap.soap_client(spec.url, ...)` as `soap_client`."""
        spec = self.spec
        if soap_client is None:
            raise BuildError("A SOAP request needs its WSDL loaded (soap_client).")
        if not spec.soap_operation:
            raise BuildError("A SOAP request needs an operation.")
        wsse = None
        if spec.auth.type == "wsse":
            wsse = soap.username_token(
                spec.auth.username,
                spec.auth.password,
                digest=spec.auth.password_digest,
                created=now,
            )
        return soap.build_soap_request(
            soap_client,
            spec.soap_operation,
            fields,
            version=spec.soap_version,
            wsse=wsse,
        )
