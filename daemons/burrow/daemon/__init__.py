"""The daemon layer: what turns the engines into systemd services.

``service`` runs a producer or consumer engine until a signal, ``notify`` speaks sd_notify (READY,
STATUS, WATCHDOG), ``journal`` logs to journald with structured fields, ``daemonize`` detaches on
hosts without systemd, ``http`` serves the producer's API on its Unix socket (``sockets`` finds or
binds that socket), ``bridge`` hands the producer's futures to the API's event loop, and
``prometheus`` exports the engines' events (:mod:`burrow.metrics`) as Prometheus metrics. The core
library (``burrow``) never imports from here.
"""
