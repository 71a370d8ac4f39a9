"""The instagram-webhook in Python/boto3, as small as it can honestly be: the baseline the
cold-start bench (tests/benches/cold_start.rs) runs beside the Rust function, under the same
Runtime API emulator, against the same moto stack, with the same environment.

It does the same work on the same data, minus sealing: reads its secrets once from Secrets
Manager (APP_SECRET_IDS), verifies X-Hub-Signature-256 over the raw body in constant time,
splits entry[] x messaging[]/standby[] into jobs, looks each account's route up in DynamoDB
(GetItem IGACCT#<id>/ROUTE) and sends the routed jobs to the to-livechat FIFO queue in batches
of ten. (The Rust function also seals each job under the organization's data key; leaving that
out only flatters this baseline.)

Run by the emulator as a custom runtime: AWS_LAMBDA_RUNTIME_API, the 2018-06-01 interface.
"""

import base64
import hashlib
import hmac
import json
import os
import urllib.request

import boto3

RUNTIME = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"


def load_secrets(client):
    values = {}
    for secret_id in filter(None, os.environ.get("APP_SECRET_IDS", "").split(",")):
        values.update(json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"]))
    return values


SECRETS = load_secrets(boto3.client("secretsmanager"))
APP_SECRET = SECRETS["META_APP_SECRET"].encode()
DYNAMODB = boto3.client("dynamodb")
SQS = boto3.client("sqs")
TABLE = os.environ["TABLE_NAME"]
QUEUE = os.environ["TO_LIVECHAT_QUEUE_URL"]


def answer(status, body):
    return {"statusCode": status, "headers": {"content-type": "text/plain"}, "body": body}


def jobs_of(body):
    for entry in body.get("entry", []):
        for field in ("messaging", "standby"):
            for item in entry.get(field, []):
                echo = item.get("message", {}).get("is_echo") is True
                account = (item["sender"] if echo else item["recipient"])["id"]
                customer = (item["recipient"] if echo else item["sender"])["id"]
                event_id = item.get("message", {}).get("mid") or str(item.get("timestamp"))
                yield account, customer, event_id, field, item


def handle(event):
    raw = event.get("body") or ""
    raw = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    signature = event.get("headers", {}).get("x-hub-signature-256", "")
    expected = "sha256=" + hmac.new(APP_SECRET, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return answer(401, "invalid signature")
    routes, messages = {}, []
    for account, customer, event_id, field, item in jobs_of(json.loads(raw)):
        if account not in routes:
            key = {"pk": {"S": "IGACCT#" + account}, "sk": {"S": "ROUTE"}}
            routes[account] = "Item" in DYNAMODB.get_item(TableName=TABLE, Key=key)
        if routes[account]:
            job = {"kind": "instagram_event", "ig_account_id": account, "igsid": customer,
                   "event_id": event_id, "field": field, "item": item}
            messages.append({
                "Id": str(len(messages)),
                "MessageBody": json.dumps({"v": 1, "job": job}),
                "MessageGroupId": "ig:%s:%s" % (account, customer),
                "MessageDeduplicationId": hashlib.sha256(event_id.encode()).hexdigest(),
            })
    for i in range(0, len(messages), 10):
        batch = [dict(m, Id=str(n)) for n, m in enumerate(messages[i:i + 10])]
        SQS.send_message_batch(QueueUrl=QUEUE, Entries=batch)
    return answer(200, "EVENT_RECEIVED")


def main():
    while True:
        with urllib.request.urlopen(RUNTIME + "/invocation/next") as r:
            request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(r.read())
        result = json.dumps(handle(event)).encode()
        url = RUNTIME + "/invocation/" + request_id + "/response"
        urllib.request.urlopen(urllib.request.Request(url, data=result, method="POST")).read()


if __name__ == "__main__":
    main()
