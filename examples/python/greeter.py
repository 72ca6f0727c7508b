"""A Halyard service written in Python: `demo.greeter.v1.Greeter` (proto/demo/greeter/v1),
registered as an instance of service `greeter` beside the local mesh's Node greeters, so
that gateways route calls to it too. Every reply names the instance that produced it.

It uses only the repository's .proto files and public packages (grpcio, nats-py):

- serves the greeter and grpc.health.v1 (NOT_SERVING until registered);
- registers through discovery's Registry API, renews, and on SIGTERM/SIGINT drains
  (DRAINING, a grace period, deregistration) before it stops serving (registration.py);
- logs every lifecycle, gateway and discovery event published on HALYARD_EVENTS while
  it runs, decoded from protobuf (bus.py).

    "$(bash examples/python/venv.sh)" examples/python/greeter.py [--listen 127.0.0.1:0]
        [--instance-id ID] [--lease-seconds 10] [--drain-seconds 2] [--events SUBJECT]

Environment: HALYARD_REGISTRY_TOKEN_FILE (the file holding the service token discovery
grants service `greeter` to; or a client certificate, see registration.py), HALYARD_NATS
and the other bus settings (bus.py), HALYARD_DISCOVERY (comma-separated Registry
addresses; default: the live discovery replicas found in the registry bucket),
HALYARD_HOST (host id), HALYARD_LOG_LEVEL (default info). Logs are JSON lines on stdout,
each with a stable `msgId` (EXPY…).
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import bus
import contracts
from registration import Credential, Registration

SERVICE_ID = "greeter"
GREETER = "demo.greeter.v1.Greeter"
GREETER_PROTO = "demo/greeter/v1/greeter.proto"

log = logging.getLogger("greeter")


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, msg and the record's extra fields."""

    STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": int(record.created * 1000), "level": record.levelname.lower(), "name": record.name}
        line.update({k: v for k, v in vars(record).items() if k not in self.STANDARD})
        line["msg"] = record.getMessage()
        if record.exc_info:
            line["err"] = self.formatException(record.exc_info)
        return json.dumps(line)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    port = os.environ.get("PORT", "0")
    parser.add_argument("--listen", default=f"127.0.0.1:{port}", help="host:port to serve on (port 0: any free one)")
    parser.add_argument("--instance-id", help="default: greeter-py-<port>")
    parser.add_argument("--lease-seconds", type=int, default=10)
    parser.add_argument("--drain-seconds", type=float, default=2)
    parser.add_argument("--events", default="halyard.events.>", help="subject filter on HALYARD_EVENTS")
    return parser.parse_args()


def greeter_servicer(instance_id: str):
    greeter = contracts.load(GREETER_PROTO)
    base = contracts.load(GREETER_PROTO, grpc=True).GreeterServicer

    class Greeter(base):
        async def SayHello(self, request, context):
            name = request.name or "world"
            return greeter.HelloReply(message=f"Hello from Python, {name}!", instance_id=instance_id)

        async def StreamHellos(self, request, context):
            name = request.name or "world"
            count = min(request.count or 3, 100)
            interval = min(request.interval_ms or 200, 5000) / 1000
            for index in range(count):
                if index > 0:
                    await asyncio.sleep(interval)
                yield greeter.HelloReply(
                    message=f"Hello #{index + 1} from Python, {name}!", instance_id=instance_id, index=index
                )

    return Greeter()


async def serve(args: argparse.Namespace) -> None:
    credential = Credential()  # before anything else: a missing credential stops here
    server = grpc.aio.server()
    port = server.add_insecure_port(args.listen)
    address = f"{args.listen.rsplit(':', 1)[0]}:{port}"
    instance_id = args.instance_id or f"greeter-py-{port}"
    contracts.load(GREETER_PROTO, grpc=True).add_GreeterServicer_to_server(greeter_servicer(instance_id), server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)

    async def set_health(status) -> None:
        for name in ("", GREETER):
            await checks.set(name, status)

    # NOT_SERVING until registered: a launcher's readiness probe then means "in the registry".
    await set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info(f"listening on {address}", extra={"msgId": "EXPY0001I", "address": address, "instanceId": instance_id})

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    nc = await bus.connect(f"python-greeter-{instance_id}")
    events = asyncio.create_task(bus.print_events(await bus.subscribe_events(nc, args.events)))
    try:
        discovery = [a for a in os.environ.get("HALYARD_DISCOVERY", "").split(",") if a]
        instances = contracts.load("halyard/discovery/v1/instance.proto")
        registration = Registration(
            discovery or await bus.discovery_addresses(nc),
            credential,
            instances.ServiceInstance(
                service_id=SERVICE_ID,
                instance_id=instance_id,
                address=address,
                grpc_services=[GREETER],
                status=instances.InstanceStatus.UP,
                # The local mesh's greeters are sticky per user: every instance of a service says the same.
                metadata={"lb.policy": "user"},
                lease_seconds=args.lease_seconds,
                host_id=os.environ.get("HALYARD_HOST", ""),
                version="python-1",
            ),
            args.drain_seconds,
        )
        await registration.start()
        await set_health(health_pb2.HealthCheckResponse.SERVING)
        await stopping.wait()
        log.info("stopping", extra={"msgId": "EXPY0013I"})
        await set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await registration.stop()
    finally:
        await server.stop(grace=5)
        events.cancel()
        await nc.drain()


def main() -> int:
    args = parse_args()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=os.environ.get("HALYARD_LOG_LEVEL", "info").upper(), handlers=[handler])
    try:
        contracts.generate()
        asyncio.run(serve(args))
    except (ValueError, FileNotFoundError, PermissionError) as error:  # settings: a credential or file
        log.error(str(error), extra={"msgId": "EXPY0016E"})
        return 2
    except Exception:
        log.exception("failed", extra={"msgId": "EXPY0015E"})
        return 1
    log.info("stopped", extra={"msgId": "EXPY0014I"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
