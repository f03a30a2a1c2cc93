"""Hobotnica: a self-hosted CI/CD daemon for GitHub repositories whose build is a Makefile."""

__version__ = "0.1.0"
