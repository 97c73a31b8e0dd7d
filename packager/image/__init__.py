"""Package time, image side: render a build context from a plan and build it offline."""
from packager.image.outputs import report
from packager.image.pipeline import BuildRequest, BuildResult, parse_opts, run_build

__all__ = ["BuildRequest", "BuildResult", "parse_opts", "report", "run_build"]
