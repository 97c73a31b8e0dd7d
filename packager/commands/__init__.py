"""CLI command functions; packager.cli registers them."""
