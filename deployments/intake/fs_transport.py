"""The embedded broker: kombu's filesystem transport, made to keep a case until it is acknowledged.

kombu's own filesystem transport deletes a message file as soon as a consumer reads it; a
consumer killed mid-case (or stopped before it restores what it holds) loses those cases. Here
a read moves the file to ``inflight/`` beside the queue; the acknowledgement (after the case is
classified) deletes it; a requeue or restore deletes it after writing the message back. At
startup, before it consumes, the one consumer replica moves whatever is left in ``inflight/``
back to the queue (``recover_inflight``): a case is delivered again, never dropped. Registered
with kombu as the ``chsfs://`` transport.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

SCHEME = "chsfs"
INFLIGHT_KEY = "x_chs_inflight"


def inflight_dir(queue_dir: str | Path) -> Path:
    return Path(queue_dir).parent / "inflight"


def recover_inflight(queue_dir: str | Path) -> int:
    """Put every message a consumer took and never acknowledged back on the queue; how many."""
    folder = inflight_dir(queue_dir)
    moved = 0
    for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
        shutil.move(str(folder / name), str(Path(queue_dir) / name))
        moved += 1
    return moved


class Channel(filesystem.Channel):
    def _inflight(self) -> Path:
        folder = inflight_dir(self.data_folder_in)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _get(self, queue):
        wanted = f"{queue}.msg"
        inflight = self._inflight()
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            target = inflight / filename
            try:
                shutil.move(os.path.join(self.data_folder_in, filename), str(target))
            except OSError:
                continue  # taken by another reader meanwhile
            with open(target, "rb") as f:
                payload = loads(bytes_to_str(f.read()))
            payload.setdefault("properties", {})[INFLIGHT_KEY] = filename
            return payload
        raise filesystem.Empty()

    def _drop_inflight(self, message) -> None:
        name = (getattr(message, "properties", None) or {}).get(INFLIGHT_KEY)
        if name and "/" not in name:
            try:
                os.remove(self._inflight() / name)
            except FileNotFoundError:
                pass

    def basic_ack(self, delivery_tag, multiple=False):
        message = self.qos.get(delivery_tag) if delivery_tag in self.qos._delivered else None
        super().basic_ack(delivery_tag, multiple)
        if message is not None:
            self._drop_inflight(message)

    def basic_reject(self, delivery_tag, requeue=False):
        message = self.qos.get(delivery_tag) if delivery_tag in self.qos._delivered else None
        super().basic_reject(delivery_tag, requeue=requeue)
        if message is not None:
            self._drop_inflight(message)

    def _restore(self, message):
        super()._restore(message)
        self._drop_inflight(message)


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES[SCHEME] = "deployments.intake.fs_transport:Transport"
