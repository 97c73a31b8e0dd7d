"""packager: plan, package and serve LLMs on any hardware."""
__version__ = "0.1.0"
