"""Shared fixtures: small real samples of the bundled corpora."""

from __future__ import annotations

import pytest

from workbench.data import load_corpus


@pytest.fixture(scope="session")
def moses_sample() -> list[str]:
    return load_corpus("moses-test", limit=500, seed=1)


@pytest.fixture(scope="session")
def drugs_sample() -> list[str]:
    return load_corpus("chembl-drugs", limit=200, seed=2)


def pytest_configure(config: pytest.Config) -> None:
    """No diffusers progress bars ("Loading pipeline components...") in the test output."""
    try:
        from diffusers.utils import logging as diffusers_logging
    except ImportError:  # the chemistry-core tests run without the engines' dependencies
        return
    diffusers_logging.disable_progress_bar()
