"""The snapshot store: the only contract between collecting and displaying."""

from store.snapshots import SnapshotInfo, SnapshotStore, StoreError

__all__ = ["SnapshotInfo", "SnapshotStore", "StoreError"]
