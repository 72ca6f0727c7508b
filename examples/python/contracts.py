"""Halyard's contracts for Python, generated from the repository's .proto files at start.

Nothing generated is kept: grpcio-tools compiles the .proto files into a fresh temporary
folder that is put on the import path (and removed at exit), so the code always matches the contracts it runs
against. HALYARD_PROTO_DIR names another copy of the repository's proto/ folder.
"""

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pool, message, message_factory
from grpc_tools import protoc

PROTO_DIR = Path(os.environ.get("HALYARD_PROTO_DIR", Path(__file__).resolve().parents[2] / "proto"))

# What this service uses: the Registry, the greeter it serves, and every event type.
FILES = [
    "halyard/discovery/v1/instance.proto",
    "halyard/discovery/v1/registry.proto",
    "halyard/discovery/v1/events.proto",
    "halyard/launcher/v1/lifecycle.proto",
    "halyard/gateway/v1/events.proto",
    "demo/greeter/v1/greeter.proto",
]


def generate() -> None:
    """Compiles FILES (messages and gRPC stubs) and imports them, so their types are known."""
    out = tempfile.mkdtemp(prefix="halyard-contracts-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main([*args, *(str(PROTO_DIR / f) for f in FILES)]) != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR}")
    sys.path.insert(0, out)
    for proto_file in FILES:
        load(proto_file)


def load(proto_file: str, grpc: bool = False):
    """The generated module of a file in FILES (`_pb2`, or `_pb2_grpc` for its stubs)."""
    module = proto_file.removesuffix(".proto").replace("/", ".") + ("_pb2_grpc" if grpc else "_pb2")
    return importlib.import_module(module)


def message_class(type_name: str) -> type[message.Message] | None:
    """The class of a fully qualified message name, e.g. `halyard.launcher.v1.LifecycleEvent`."""
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        return None
    return message_factory.GetMessageClass(descriptor)
