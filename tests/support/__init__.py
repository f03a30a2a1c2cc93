"""Test support shared by every test module: the fake GitHub, git remotes, payloads, signing."""
