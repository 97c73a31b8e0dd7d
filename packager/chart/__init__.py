"""The per-model Helm chart: values from a plan, the chart written beside a build, its package."""
from packager.chart.package import find_chart, package_chart
from packager.chart.values import values_from_plan
from packager.chart.writer import chart_plan, chart_values, write_chart

__all__ = ["chart_plan", "chart_values", "find_chart", "package_chart", "values_from_plan", "write_chart"]
