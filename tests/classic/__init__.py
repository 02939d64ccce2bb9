"""Tests of detseg.classic (a package, so that file names like test_cli.py may repeat in other folders)."""
