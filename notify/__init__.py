"""After a snapshot is saved: what changed since the previous one, as one e-mail and/or one
webhook message per run (docs/notifications.md).

``changes`` finds the changes (pure), ``message`` words them (pure), ``delivery`` sends them
and reports each channel's outcome as data, never as an exception.
"""

from notify.changes import Change, ChangeKind, Report, host_changes
from notify.delivery import Delivery, deliver

__all__ = ["Change", "ChangeKind", "Delivery", "Report", "deliver", "host_changes"]
