"""The transport registry: every method and batch transport has one class."""

import pytest

from sources.models import FeedbackConfig
from sources.outbound.payloads import BuildError
from sources.transports import TransportError
from sources.transports.batch import DEFAULT_PORTS
from sources.transports.registry import (
    METHODS,
    TRANSPORTS,
    batch_transport,
    http_transport,
)


def test_every_method_but_batch_has_a_class() -> None:
    http_methods = set(FeedbackConfig.Method.values) - {FeedbackConfig.Method.BATCH}
    assert set(METHODS) == http_methods
    assert all(METHODS[name].name == name for name in METHODS)


def test_every_batch_transport_choice_has_a_class() -> None:
    assert set(TRANSPORTS) == set(FeedbackConfig.Transport.values)
    assert all(TRANSPORTS[name].name == name for name in TRANSPORTS)


def test_default_ports_come_from_the_classes() -> None:
    assert DEFAULT_PORTS == {"ftp": 21, "ftps": 21, "sftp": 22}


def test_unknown_method_is_a_build_error() -> None:
    with pytest.raises(BuildError, match="Unknown method 'fax'"):
        http_transport("fax")


def test_unknown_transport_is_permanent() -> None:
    with pytest.raises(TransportError) as caught:
        batch_transport("")
    assert caught.value.permanent
    assert caught.value.message == "The config has no batch transport ('')."
