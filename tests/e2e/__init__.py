"""End-to-end tests: the agent as a process, scraped by a real Prometheus."""
