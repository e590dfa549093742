import pytest

from biowm.core.errors import InvalidInputError
from biowm.core.registry import Domain, domains, get_domain


def test_builtin_domains_are_discovered():
    found = domains()
    assert "glucose" in found
    assert "simulate" in found["glucose"].commands


def test_unknown_domain_lists_the_registered_ones():
    with pytest.raises(InvalidInputError, match="registered domains: .*glucose"):
        get_domain("liver")


def test_unknown_verb_is_refused():
    with pytest.raises(ValueError, match="unknown verbs"):
        Domain(name="x", summary="", make_simulator=object, commands={"dance": print})
