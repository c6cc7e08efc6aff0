"""Adapter to the Kubernetes API: configuration, the lightkube client, errors and reflectors."""
