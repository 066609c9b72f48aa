"""Exit statuses of the ``burrow``, ``burrow-consumer`` and ``burrow-producer`` commands.

Scripts and systemd tell the kinds of failure apart by these: a configuration error exits
``EX_CONFIG`` (78, from BSD's sysexits.h), which the units list in ``RestartPreventExitStatus=`` so
a broken file does not restart-loop, while a usage error stays argparse's 2.
"""

from __future__ import annotations

#: Everything asked for was done.
EX_OK = 0
#: The command ran but something failed (a request got no reply, a daemon is degraded).
EX_FAILED = 1
#: Wrong command line (argparse's own status for usage errors).
EX_USAGE = 2
#: ``burrow status``: a daemon it checks is not running (nothing answers), as LSB's "not running".
EX_NOT_RUNNING = 3
#: A configuration file is missing, unreadable or invalid (sysexits.h ``EX_CONFIG``).
EX_CONFIG = 78
