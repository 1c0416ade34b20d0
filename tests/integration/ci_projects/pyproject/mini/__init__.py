"""A tiny library for the CI-build test."""


def slug(text: str) -> str:
    return "-".join(text.lower().split())
