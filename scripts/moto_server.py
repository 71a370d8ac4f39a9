#!/usr/bin/env python3
"""moto's server, with one correction to its SQS FIFO emulation, for the tests.

Usage: moto_server.py [-H HOST] [-p PORT]   (the same arguments as `moto_server`)

The correction: when several in-flight messages of one FIFO message group become visible again
together (a consumer crashed or timed out), SQS returns them again in their order, before any
later message of the group. moto 5.x counts a message as holding its group until a receive
takes it out of its in-flight set, which it does one message at a time while it iterates; so the
group stays locked until the last of them, which is returned *first*, followed by newer messages
(found by tests/tests/faults.rs: a worker killed mid-batch). Here a receive may return a visible
message only when no earlier message of its group is still in flight (invisible), which is
SQS's rule, long polling included; moto's own group lock is not consulted for FIFO queues.
Source for SQS's behaviour: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-understanding-logic.html
"""

import sys

from moto.server import main
from moto.sqs import models

_visible = models.Queue.messages.fget


def _receivable(queue):
    """Visible messages a receive may return, in order: in a FIFO queue, none that comes after a
    message of its group still in flight."""
    if not queue.fifo_queue:
        return _visible(queue)
    held, out = set(), []
    for message in queue._messages:
        if message.delayed:
            continue
        if not message.visible:
            held.add(message.group_id)
        elif message.group_id not in held:
            out.append(message)
    return out


def _no_group_lock(queue):
    # The order rule above replaces moto's own group lock for FIFO queues.
    if queue.fifo_queue:
        return set()
    return {m.group_id for m in queue.pending_messages if m.group_id is not None}


for name in ("messages", "pending_message_groups", "approximate_number_of_messages"):
    if not isinstance(getattr(models.Queue, name, None), property):
        sys.exit(f"moto_server.py: this moto has no Queue.{name}; update the correction")
models.Queue.messages = property(_receivable)
models.Queue.pending_message_groups = property(_no_group_lock)
models.Queue.approximate_number_of_messages = property(lambda q: len(_visible(q)))

if __name__ == "__main__":
    main(sys.argv[1:])
