"""Test peers the collector tests share."""

from tests.peers.fixtures import slapd_bulk, slapd_standard  # noqa: F401  (pytest fixtures)
