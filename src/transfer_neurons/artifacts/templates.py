"""The HTML pages' Jinja templates and their one stylesheet: package data in `transfer_neurons/templates/`
(report.html, compare.html, neuron_index.html, neuron_card.html, style.css, neuron_table.js). Every page
includes the stylesheet (and its script) inline, so it works from `file://` with no server."""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

PAGES_OF_STUDY = ("report.html", "compare.html")  # rendered from results: changing them changes no result


@functools.cache
def environment() -> Environment:
    """The templates' environment (autoescaped)."""
    loader = PackageLoader("transfer_neurons", "templates")
    return Environment(loader=loader, autoescape=select_autoescape(default=True))


def render(name: str, **context: Any) -> str:
    """Template `name` rendered with `context`."""
    return environment().get_template(name).render(**context)
