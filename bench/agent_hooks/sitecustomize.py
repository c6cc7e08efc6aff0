"""Imported at start-up by the agent processes bench/collect.py launches (it puts this
directory on their PYTHONPATH). Turns on the sampler's one debug line per pass, whose
timestamps give the sample interval under scrape load, while every other logger stays at the
agent's --log-level (running the whole agent at debug would add pyroute2's per-message logging
to the CPU being measured).
"""

import logging

logging.getLogger("agent.metrics.sampler").setLevel(logging.DEBUG)
