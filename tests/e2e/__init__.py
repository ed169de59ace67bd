"""End-to-end tests: the image, the chart and a real node (run by `nox -s e2e`)."""
