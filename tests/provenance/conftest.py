"""One test CA for the session (signing helpers: ``testkit.c2pa``)."""

from __future__ import annotations

import pytest

from testkit.c2pa import SigningCA, make_ca


@pytest.fixture(scope="session")
def signing_ca() -> SigningCA:
    return make_ca("DIF Test")
