"""The operators' probes over HTTP: `/healthz` and `/metrics` (`http.py`, README "Metrics")."""
