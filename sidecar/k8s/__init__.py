"""Kubernetes packaging: `sidecar` (the streamproxy container, defined once for the chart and
the injector) and `inject` (`streamproxy inject`). The code that needs the optional
`streamproxy[inject]` dependencies (kubernetes, PyYAML) lives here and only here."""
