"""Objects for the platforms that serve models on Kubernetes beside the chart (KServe), written from a plan.
Platform outputs live here, beside the chart and outside the image build."""
