"""Comma-separated options parsed from their config field's type: numbers, choices, words, 'all' and
key=value pairs; a bad item is one InputError naming the option."""

from __future__ import annotations

import pytest

from transfer_neurons.choices import Method
from transfer_neurons.cli.fields import parse_list
from transfer_neurons.errors import InputError


def test_lists_follow_the_field_type():
    assert parse_list("0, 0.5,2", "--factor", tuple[float, ...]) == (0.0, 0.5, 2.0)
    assert parse_list("tn,lape", "--methods", list[Method]) == [Method.tn, Method.lape]
    assert parse_list("all", "--langid-langs", tuple[str, ...] | None) is None
    assert parse_list("xx=Other, ja=Japonic", "--families", dict[str, str] | None) == {"xx": "Other", "ja": "Japonic"}
    with pytest.raises(InputError, match="--families 'ja:Japonic' must look like key=value"):
        parse_list("ja:Japonic", "--families", dict[str, str] | None)
    with pytest.raises(InputError, match="--methods: unknown method 'xx'"):
        parse_list("tn,xx", "--methods", list[Method])
    with pytest.raises(InputError, match="--top-k '10,0': 0 is out of range"):
        parse_list("10,0", "--top-k", tuple[int, ...])


def test_a_named_number_list_refuses_an_empty_grid_and_non_finite_items():
    assert parse_list("1, ,-2.5", "--alphas", tuple[float, ...], "alpha") == (1.0, -2.5)
    with pytest.raises(InputError, match="^--alphas is empty; give at least one alpha"):
        parse_list(" , ", "--alphas", tuple[float, ...], "alpha")
    with pytest.raises(InputError, match="^--alphas: every alpha must be a finite number, not nan$"):
        parse_list("1,nan", "--alphas", tuple[float, ...], "alpha")
    with pytest.raises(InputError, match="--alphas '1,x': 'x' is not a number"):
        parse_list("1,x", "--alphas", tuple[float, ...], "alpha")
