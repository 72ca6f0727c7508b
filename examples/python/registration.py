"""Registration through discovery's Registry gRPC API (halyard.discovery.v1.Registry).

Registers the instance, renews its lease every renewal interval discovery answers
(a third of the lease), registers again when a renewal says NOT_FOUND (the lease
lapsed), and on stop sets DRAINING, waits for the gateways to stop sending new calls,
then deregisters. Each call tries the discovery replicas in turn while the failure is
the replica's (unreachable), not the request's.

The credential comes from files named by the environment, never from flags:
HALYARD_REGISTRY_TOKEN_FILE (a service token, sent as `authorization: Bearer`), and for
TLS HALYARD_REGISTRY_CA_FILE with HALYARD_REGISTRY_CERT_FILE / _KEY_FILE (a client
certificate). Discovery's config lists the token's SHA-256 and what it may register.
"""

import asyncio
import logging
import os
from pathlib import Path

import grpc

import contracts

log = logging.getLogger("registration")

FAIL_OVER = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
CALL_TIMEOUT_SECONDS = 3


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


class Credential:
    """What proves the service's identity to discovery, read once from its files."""

    def __init__(self, env=os.environ):
        token_file = env.get("HALYARD_REGISTRY_TOKEN_FILE")
        ca, cert, key = (env.get(f"HALYARD_REGISTRY_{name}_FILE") for name in ("CA", "CERT", "KEY"))
        if not token_file and not cert:
            raise ValueError("HALYARD_REGISTRY_TOKEN_FILE (or a client certificate) is required to call discovery")
        if bool(cert) != bool(key):
            raise ValueError("a client certificate needs HALYARD_REGISTRY_CERT_FILE and HALYARD_REGISTRY_KEY_FILE")
        self.metadata: tuple[tuple[str, str], ...] = ()
        if token_file:
            token = _read(token_file).decode().strip()
            if not token:
                raise ValueError(f"the token file {token_file} is empty")
            self.metadata = (("authorization", f"Bearer {token}"),)
        self.tls = (
            grpc.ssl_channel_credentials(_read(ca), _read(key) if key else None, _read(cert) if cert else None)
            if ca
            else None
        )

    def channel(self, address: str) -> grpc.aio.Channel:
        if self.tls:
            return grpc.aio.secure_channel(address, self.tls)
        return grpc.aio.insecure_channel(address)


class Registration:
    def __init__(self, discovery: list[str], credential: Credential, instance, drain_seconds: float):
        self._messages = contracts.load("halyard/discovery/v1/registry.proto")
        self._status = contracts.load("halyard/discovery/v1/instance.proto").InstanceStatus
        grpc_module = contracts.load("halyard/discovery/v1/registry.proto", grpc=True)
        self._channels = [credential.channel(address) for address in discovery]
        self._stubs = [grpc_module.RegistryStub(channel) for channel in self._channels]
        self._addresses = discovery
        self._current = 0
        self._metadata = credential.metadata
        self._instance = instance
        self._ref = self._messages.InstanceRef(service_id=instance.service_id, instance_id=instance.instance_id)
        self._drain_seconds = drain_seconds
        self._renewing: asyncio.Task | None = None

    async def start(self) -> None:
        """Registers (failing on a refusal: UNAUTHENTICATED, PERMISSION_DENIED, …) and starts renewing."""
        interval = await self._register()
        self._renewing = asyncio.create_task(self._renew_forever(interval))

    async def stop(self) -> None:
        """DRAINING, the grace period, then deregistration."""
        if self._renewing:
            self._renewing.cancel()
        try:
            await self._call(
                "SetStatus", self._messages.SetStatusRequest(instance=self._ref, status=self._status.DRAINING)
            )
            log.info(
                "draining before deregistration", extra={"msgId": "EXPY0004I", "graceSeconds": self._drain_seconds}
            )
            await asyncio.sleep(self._drain_seconds)
            await self._call("Deregister", self._messages.DeregisterRequest(instance=self._ref))
            log.info("deregistered", extra={"msgId": "EXPY0005I", **self._ids()})
        finally:
            for channel in self._channels:
                await channel.close()

    async def _register(self) -> float:
        response = await self._call("Register", self._messages.RegisterRequest(instance=self._instance))
        interval = response.renew_interval_seconds or max(1, self._instance.lease_seconds // 3)
        log.info("registered", extra={"msgId": "EXPY0002I", **self._ids(), "renewIntervalSeconds": interval})
        return interval

    async def _renew_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                response = await self._call("Renew", self._messages.RenewRequest(instance=self._ref))
                log.debug("renewed", extra={"msgId": "EXPY0003D", "expiresAtMs": response.expires_at_ms})
            except grpc.aio.AioRpcError as error:
                try:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    log.warning("lease lapsed: registering again", extra={"msgId": "EXPY0006W", **self._ids()})
                    interval = await self._register()
                except grpc.aio.AioRpcError as failure:
                    # The lease outlives several intervals: the next attempt may still save it.
                    log.warning(
                        "renewal failed; retrying at the next interval",
                        extra={"msgId": "EXPY0007W", "code": failure.code().name, "details": failure.details()},
                    )

    async def _call(self, method: str, request):
        """One call, on each replica in turn while the failure is the replica's."""
        for attempt in range(len(self._stubs)):
            index = (self._current + attempt) % len(self._stubs)
            try:
                response = await getattr(self._stubs[index], method)(
                    request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError as error:
                if error.code() not in FAIL_OVER or attempt == len(self._stubs) - 1:
                    raise
                continue
            if index != self._current:
                log.warning(
                    "discovery replica unreachable: using another",
                    extra={"msgId": "EXPY0008W", "from": self._addresses[self._current], "to": self._addresses[index]},
                )
                self._current = index
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _ids(self) -> dict:
        return {"serviceId": self._ref.service_id, "instanceId": self._ref.instance_id}
