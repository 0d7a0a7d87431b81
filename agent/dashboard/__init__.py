"""The web dashboard: the cluster's monitoring topics as a page, JSON, events and metrics."""
