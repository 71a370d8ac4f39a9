#!/usr/bin/env python3
"""moto's server, with two corrections, for the tests: SQS FIFO order, DynamoDB transaction cost.

Usage: moto_server.py [-H HOST] [-p PORT]   (the same arguments as `moto_server`)

The correction: when several in-flight messages of one FIFO message group become visible again
together (a consumer crashed or timed out), SQS returns them again in their order, before any
later message of the group. moto 5.x counts a message as holding its group until a receive
takes it out of its in-flight set, which it does one message at a time while it iterates; so the
group stays locked until the last of them, which is returned *first*, followed by newer messages
(found by tests/tests/end_to_end/faults.rs: a worker killed mid-batch). Here a receive may return a visible
message only when no earlier message of its group is still in flight (invisible), which is
SQS's rule, long polling included; moto's own group lock is not consulted for FIFO queues.
Source for SQS's behaviour: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-understanding-logic.html

The second: moto 5.x backs up a DynamoDB transaction by deep-copying every table it touches, once
per write of the transaction (100 copies of the whole table for a 100-write transaction), so a
transaction on a table of 50,000 items took minutes (found by shared/tests/suite/purge_at_scale.rs: the
uninstall marks items in transactions fenced on the installation). Here only the items the
transaction writes are backed up, and put back if it is cancelled; what a transaction does and
answers is unchanged (shared/tests/suite/store_contract.rs checks all-or-nothing on moto).
"""

import sys

from moto.server import main
from moto.sqs import models
from moto.dynamodb import models as dynamodb
from moto.dynamodb.models.table import Table

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

# --- DynamoDB: back up the items a transaction writes, not whole tables ----------------------

_copy = dynamodb.copy
_transact = dynamodb.DynamoDBBackend.transact_write_items


class _TablesNotCopied:
    """`copy` as moto's DynamoDB module sees it: a table is "copied" as itself (the items the
    transaction writes are backed up instead); everything else is copied as before."""

    copy = staticmethod(_copy.copy)

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else _copy.deepcopy(value, memo)


def _key_of(backend, op_type, op):
    table = backend.get_table(op["TableName"])
    if op_type != "Put":
        return op["Key"]
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _transact_write_items(self, transact_items):
    backup = []
    for item in transact_items:
        op_type, op = next(iter(item.items()))
        if op_type in {"Put", "Delete", "Update"} and op.get("TableName") in self.tables:
            key = _key_of(self, op_type, op)
            old = self.get_item(op["TableName"], key)
            backup.append((op["TableName"], key, old.to_json()["Attributes"] if old else None))
    try:
        return _transact(self, transact_items)
    except Exception:
        for table_name, key, attrs in reversed(backup):
            if attrs is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attrs)
        raise


for name in ("copy", "DynamoDBBackend"):
    if not hasattr(dynamodb, name):
        sys.exit(f"moto_server.py: this moto's DynamoDB has no {name}; update the correction")
dynamodb.copy = _TablesNotCopied
dynamodb.DynamoDBBackend.transact_write_items = _transact_write_items

if __name__ == "__main__":
    main(sys.argv[1:])
