"""Monitoring: Prometheus metrics and health endpoints (metrics.py, health.py), traces."""
