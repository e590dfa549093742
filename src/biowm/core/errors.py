"""Errors that biowm raises at its boundaries."""

from __future__ import annotations


class InvalidInputError(ValueError):
    """User input that biowm refuses, with a one-line reason naming what was wrong.

    The CLI turns it into exit code 2 and prints the message; the API lets it propagate.
    """
