"""Operator tools behind the ``burrow`` command: the socket API client of ``burrow send``, the burst
runner with its progress bar and summary, the demo, and the throwaway RabbitMQ node that the demo,
the tests and the benchmarks start. The daemons never import from here.
"""
