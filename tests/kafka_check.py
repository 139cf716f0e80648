"""An independent reader of PySaaS's event topics (PyPI kafka-python + jsonschema).

Reads every message of the given topics from the start, rebuilds each CloudEvent (binary mode:
`ce_*` headers and the data as the value; structured mode: one JSON value), checks the envelope
and validates the data against the published schema of its type (`pysaas events schemas`).
Prints one JSON object: how many events it read per topic, their ids, and every problem found.

Usage: kafka_check.py BOOTSTRAP SCHEMAS_FILE TOPIC[=EXPECTED_COUNT]...
"""

import json
import sys

import jsonschema
from kafka import KafkaConsumer, TopicPartition


def read_topic(bootstrap, topic):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=5000,
        request_timeout_ms=30000,
    )
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    # Until nothing more comes for consumer_timeout_ms (not up to the end offsets: tansu 0.6
    # reports the last batch's base offset + 1 there, short of its last record).
    messages = list(consumer)
    consumer.close()
    return messages


def rebuild(message):
    headers = {k: v.decode() for k, v in (message.headers or [])}
    if "ce_id" in headers:
        event = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
        event["datacontenttype"] = headers.get("content-type")
        event["data"] = json.loads(message.value)
        return event
    if headers.get("content-type") != "application/cloudevents+json":
        raise ValueError(f"content-type {headers.get('content-type')!r} is neither mode")
    return json.loads(message.value)


def main():
    bootstrap, schemas_file, *topics = sys.argv[1:]
    with open(schemas_file) as f:
        catalogue = json.load(f)
    types = catalogue["types"]
    report = {"topics": {}, "problems": []}
    for arg in topics:
        topic, _, expected = arg.partition("=")
        ids = []
        for message in read_topic(bootstrap, topic):
            where = f"{topic}/{message.partition}@{message.offset}"
            try:
                event = rebuild(message)
            except Exception as e:  # noqa: BLE001 - reported, not raised
                report["problems"].append(f"{where}: {e}")
                continue
            for attr in ("id", "source", "type", "subject", "time", "tenantid"):
                if not event.get(attr):
                    report["problems"].append(f"{where}: no {attr}")
            if event.get("specversion") != catalogue["specversion"]:
                report["problems"].append(f"{where}: specversion {event.get('specversion')}")
            if event.get("datacontenttype") != catalogue["datacontenttype"]:
                report["problems"].append(f"{where}: datacontenttype {event.get('datacontenttype')}")
            if message.key is None or message.key.decode() != event.get("tenantid"):
                report["problems"].append(f"{where}: key {message.key!r} is not the tenant id")
            spec = types.get(event.get("type"))
            if spec is None:
                report["problems"].append(f"{where}: type {event.get('type')} is not in the catalogue")
            elif not topic.endswith(spec["topic"]):
                report["problems"].append(f"{where}: type {event['type']} belongs on {spec['topic']}")
            else:
                try:
                    jsonschema.validate(event["data"], spec["schema"])
                except jsonschema.ValidationError as e:
                    report["problems"].append(f"{where}: {event['type']}: {e.message}")
            ids.append(event.get("id"))
        report["topics"][topic] = {"count": len(ids), "ids": ids}
        if expected and int(expected) != len(ids):
            report["problems"].append(f"{topic}: {len(ids)} events, expected {expected}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
