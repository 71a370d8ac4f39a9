"""The ack work of the instagram-webhook in CPython: verify X-Hub-Signature-256, parse the body,
split it into one job per entry x messaging/standby item, write each job as JSON with its group
and deduplication ids. The Rust side is `verify_split_encode` in shared/benches/ack.rs; both run
on the same bodies, which that bench writes to target/bench-bodies/.

    .venv/bin/python3 tests/benches/baseline/ack.py   (scripts/bench ack runs both)
"""

import hashlib
import hmac
import json
import pathlib
import sys
import timeit

SECRET = b"meta-app-secret"
BODIES = pathlib.Path(__file__).resolve().parents[3] / "target" / "bench-bodies"


def ack(signature, body):
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected.encode(), signature.encode())
    written = 0
    for entry in json.loads(body)["entry"]:
        for field in ("messaging", "standby"):
            for item in entry.get(field, []):
                echo = item.get("message", {}).get("is_echo") is True
                account = (item["sender"] if echo else item["recipient"])["id"]
                customer = (item["recipient"] if echo else item["sender"])["id"]
                event_id = item["message"]["mid"]
                job = {"kind": "instagram_event", "ig_account_id": account, "igsid": customer,
                       "event_id": event_id, "field": field, "entry_time": entry.get("time"),
                       "item": item}
                group = "ig:%s:%s" % (account, customer)
                dedup = "ig:%s:%s" % (account, event_id)
                written += len(json.dumps(job)) + len(group) + len(dedup)
    return written


def main():
    for name in ("1KB_body", "1000_entries"):
        path = BODIES / (name + ".json")
        if not path.exists():
            sys.exit("run `cargo bench -p igbridge-shared --bench ack` first: it writes " + str(path))
        body = path.read_bytes()
        signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        timer = timeit.Timer(lambda: ack(signature, body))
        loops, _ = timer.autorange()
        best = min(timer.repeat(repeat=5, number=loops)) / loops
        shown = "%.1f us" % (best * 1e6) if best < 1e-3 else "%.2f ms" % (best * 1e3)
        print("python ack %s (%d B): %s" % (name, len(body), shown))


if __name__ == "__main__":
    main()
