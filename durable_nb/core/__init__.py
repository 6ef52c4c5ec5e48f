"""The vocabulary every process shares: errors, statuses, serialization, durations, retry
policies, configuration, the runtime file, tokens and the engine <-> worker framing.

Imports nothing else from durable_nb; everything else may import it.
"""
