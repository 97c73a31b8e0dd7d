"""Manifests: parse -> validate -> complete."""
from packager.manifests.load import load_hardware, load_model

__all__ = ["load_hardware", "load_model"]
