"""Service-manager and monitoring interfaces: sd_notify, Prometheus metrics, health endpoints."""
