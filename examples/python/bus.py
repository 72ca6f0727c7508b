"""Halyard's bus with a plain NATS client (nats-py): the connection, the registry bucket
and the events stream, read the way bus/names.ts names them.

The connection takes the settings every Halyard component reads: HALYARD_NATS (comma-
separated server URLs), HALYARD_NATS_CA (the CA of the servers' certificates),
HALYARD_NATS_CERT with HALYARD_NATS_KEY (a client certificate) and HALYARD_NATS_CREDS
(a NATS credentials file: user JWT and seed).
"""

import asyncio
import logging
import os
import ssl
import time

import nats
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from nats.js.api import DeliverPolicy

import contracts

log = logging.getLogger("bus")

REGISTRY_BUCKET = "halyard-registry"
EVENTS_STREAM = "HALYARD_EVENTS"
ALL_EVENTS = "halyard.events.>"
TYPE_HEADER = "Halyard-Type"
# Every discovery replica registers itself under this service id.
DISCOVERY_SERVICE_ID = "halyard-discovery"


def connect_options(env=os.environ) -> dict:
    servers = [s.strip() for s in env.get("HALYARD_NATS", "nats://127.0.0.1:4222").split(",") if s.strip()]
    options: dict = {"servers": servers, "max_reconnect_attempts": -1}
    ca, cert, key = env.get("HALYARD_NATS_CA"), env.get("HALYARD_NATS_CERT"), env.get("HALYARD_NATS_KEY")
    if bool(cert) != bool(key):
        raise ValueError("a NATS client certificate needs HALYARD_NATS_CERT and HALYARD_NATS_KEY")
    if ca or cert:
        context = ssl.create_default_context(cafile=ca or None)
        if cert:
            context.load_cert_chain(cert, key)
        options["tls"] = context
    if env.get("HALYARD_NATS_CREDS"):
        options["user_credentials"] = env["HALYARD_NATS_CREDS"]
    return options


async def connect(name: str) -> nats.NATS:
    return await nats.connect(name=name, **connect_options())


async def discovery_addresses(nc: nats.NATS) -> list[str]:
    """The gRPC addresses of the live discovery replicas, from the registry bucket; waits for one."""
    instance_class = contracts.load("halyard/discovery/v1/instance.proto").ServiceInstance
    kv = await nc.jetstream().key_value(REGISTRY_BUCKET)
    while True:
        addresses = []
        # A watch delivers the current value of each key, then None once it has caught up.
        watcher = await kv.watch(f"{DISCOVERY_SERVICE_ID}.*", ignore_deletes=True)
        try:
            while (entry := await watcher.updates(timeout=5)) is not None:
                instance = instance_class.FromString(entry.value or b"")
                # An entry whose lease has passed is gone for every reader, even before the bus drops it.
                if instance.renewed_at_ms + instance.lease_seconds * 1000 > time.time() * 1000:
                    addresses.append(instance.address)
        finally:
            await watcher.stop()
        if addresses:
            return addresses
        log.info("waiting for a discovery replica", extra={"msgId": "EXPY0009I"})
        await asyncio.sleep(0.5)


async def subscribe_events(nc: nats.NATS, subject: str):
    """Events published from now on: an ephemeral, ordered consumer (nothing to clean up)."""
    subscription = await nc.jetstream().subscribe(
        subject, stream=EVENTS_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    log.info("reading events", extra={"msgId": "EXPY0010I", "stream": EVENTS_STREAM, "subject": subject})
    return subscription


async def print_events(subscription) -> None:
    """Logs each event, decoded with the class its Halyard-Type header names."""
    async for msg in subscription.messages:
        type_name = (msg.headers or {}).get(TYPE_HEADER, "")
        event_class = contracts.message_class(type_name)
        try:
            if event_class is None:
                raise DecodeError(f"no message type {type_name!r}")
            event = event_class.FromString(msg.data)
        except DecodeError as error:
            log.warning(
                "undecodable event skipped",
                extra={"msgId": "EXPY0011W", "subject": msg.subject, "type": type_name, "error": str(error)},
            )
            continue
        log.info(
            "event",
            extra={
                "msgId": "EXPY0012I",
                "subject": msg.subject,
                "seq": msg.metadata.sequence.stream,
                "type": type_name,
                "event": json_format.MessageToDict(event),
            },
        )
