"""The PyPI SAPIENT bindings (`sapient-proto`) are faithful to the official BSI Flex 335 v2.0
definitions: the official `.proto` files (../shared/peers/sapient-apex/sapient_msg/, Crown
copyright, Apache-2.0; not copied here) are compiled by Debian's `protoc` into a descriptor set in
a temporary directory, and every message the node uses, with every one of its fields (name,
number, type, label, message/enum type) and every value of the enums they use, must match the
package's descriptors. A field the node sets in a message it sends must exist in both.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from cuas_node.outputs.sapient_msgs import SapientMessage

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "sapient-apex"
OFFICIAL = ROOT / "sapient_msg" / "bsi_flex_335_v2_0"
PACKAGE = "sapient_msg.bsi_flex_335_v2_0"

pytestmark = [
    pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc missing (scripts/test.sh installs it)"),
    pytest.mark.skipif(not OFFICIAL.is_dir(), reason="the official .proto files are not in ../shared/peers"),
]

# The messages whose every field the node reads or writes: SapientMessage reaches all of them
# (registration, registration_ack, status_report, detection_report, task, task_ack, error), and
# the walk below follows every message-typed field from it.
ROOT_MESSAGE = f"{PACKAGE}.SapientMessage"


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Full name → DescriptorProto / EnumDescriptorProto of the official files, as protoc reads them."""
    out = tmp_path_factory.mktemp("protoc") / "sapient.pb"
    files = sorted(str(p.relative_to(ROOT)) for p in OFFICIAL.glob("*.proto"))
    subprocess.run(
        ["protoc", f"-I{ROOT}", "--include_imports", f"--descriptor_set_out={out}", *files],
        check=True,
        capture_output=True,
    )
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    found: dict[str, object] = {}

    def add(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        found[name] = message
        for nested in message.nested_type:
            add(name, nested)
        for enum in message.enum_type:
            found[f"{name}.{enum.name}"] = enum

    for file in fds.file:
        for message in file.message_type:
            add(file.package, message)
        for enum in file.enum_type:
            found[f"{file.package}.{enum.name}"] = enum
    return found


def ours_by_name() -> dict[str, descriptor_pb2.DescriptorProto]:
    """The package's messages as DescriptorProtos (`CopyToProto`: the same form protoc writes)."""
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def add(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        found[name] = message
        for nested in message.nested_type:
            add(name, nested)

    seen: set[str] = set()
    for message in reachable(SapientMessage.DESCRIPTOR)[0]:
        if message.file.name in seen:
            continue
        seen.add(message.file.name)
        file = descriptor_pb2.FileDescriptorProto()
        message.file.CopyToProto(file)
        for top in file.message_type:
            add(file.package, top)
    return found


def reachable(root: Descriptor) -> tuple[list[Descriptor], list[EnumDescriptor]]:
    messages: dict[str, Descriptor] = {}
    enums: dict[str, EnumDescriptor] = {}
    todo = [root]
    while todo:
        message = todo.pop()
        if message.full_name in messages or not message.full_name.startswith(PACKAGE):
            continue
        messages[message.full_name] = message
        for field in message.fields:
            if field.message_type is not None:
                todo.append(field.message_type)
            if field.enum_type is not None:
                enums[field.enum_type.full_name] = field.enum_type
    return list(messages.values()), list(enums.values())


def field_signature(message: descriptor_pb2.DescriptorProto) -> dict[str, tuple[object, ...]]:
    """name → (number, type, label, type name, proto3 optional, oneof name): what decides the wire
    format and the generated API."""
    oneofs = [o.name for o in message.oneof_decl]
    return {
        f.name: (
            f.number,
            f.type,
            f.label,
            f.type_name.lstrip("."),
            f.proto3_optional,
            oneofs[f.oneof_index] if f.HasField("oneof_index") else None,
        )
        for f in message.field
    }


def test_every_message_and_field_the_node_uses_matches_the_official_definitions(
    official: dict[str, object],
) -> None:
    messages, enums = reachable(SapientMessage.DESCRIPTOR)
    assert len(messages) >= 40 and len(enums) >= 20  # the whole v2.0 tree, not a stub of it
    ours = ours_by_name()
    for message in messages:
        theirs = official.get(message.full_name)
        assert isinstance(theirs, descriptor_pb2.DescriptorProto), f"{message.full_name} is not official"
        mine, official_fields = field_signature(ours[message.full_name]), field_signature(theirs)
        assert mine == official_fields, (message.full_name, set(mine.items()) ^ set(official_fields.items()))
        assert list(ours[message.full_name].reserved_range) == list(theirs.reserved_range), message.full_name
    for enum in enums:
        theirs = official.get(enum.full_name)
        assert isinstance(theirs, descriptor_pb2.EnumDescriptorProto), f"{enum.full_name} is not official"
        assert {v.name: v.number for v in enum.values} == {v.name: v.number for v in theirs.value}, (
            enum.full_name
        )


def test_the_messages_the_node_sends_read_alike_with_the_official_definitions(
    official: dict[str, object], tmp_path: Path
) -> None:
    """What the codec builds, parsed with classes made from the official descriptors, reads as
    the same JSON (a field unknown to the official definitions would be missing from it)."""
    import time

    from google.protobuf import descriptor_pool, json_format, message_factory

    from cuas_node.outputs.sapient import SapientCodec
    from cuas_node.outputs.sapient_msgs import SapientSettings, SensorInfo, node_uuid, registration
    from tests.test_sapient import a_report

    out = tmp_path / "sapient.pb"
    files = sorted(str(p.relative_to(ROOT)) for p in OFFICIAL.glob("*.proto"))
    subprocess.run(
        ["protoc", f"-I{ROOT}", "--include_imports", f"--descriptor_set_out={out}", *files], check=True
    )
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(file)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(ROOT_MESSAGE))
    cover = {"type": "sector", "boresight_deg": 0, "half_width_deg": 45, "max_range_m": 300}
    settings = SapientSettings("mast-1", node_uuid("mast-1"), 3, (SensorInfo("r", "radar", cover),))
    codec = SapientCodec(settings, time.time)
    now = time.time()
    sent = [registration(settings, now), codec.status_report(now), codec.detection_report(a_report(), now)]
    for message in sent:
        parsed = cls.FromString(message.SerializeToString())
        assert json_format.MessageToDict(parsed) == json_format.MessageToDict(message)
