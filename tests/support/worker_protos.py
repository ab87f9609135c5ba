"""The Functions host's gRPC messages to the Python worker, as real protobuf message classes.

The host and the worker talk over gRPC in the messages of ``FunctionRpc.proto`` (package
``AzureFunctionsRpcMessages``, in the azure-functions-language-worker-protobuf repository). On
Python 3.13 the host starts a small proxy that receives them and hands them, unchanged, to the
worker library (``azure_functions_runtime``), together with the module of generated message
classes (``properties={"protos": ...}``). That module is not published as a package, so this one
builds the same classes at import time: the messages and fields the worker library reads and
writes, with the names, numbers and types of the protocol, declared below in proto3 syntax and
turned into descriptors by a small reader (no ``protoc`` needed). Being real protobuf messages,
they behave as the worker expects: ``WhichOneof``, maps, defaults for unset fields, and a refusal
of any field or type the protocol does not have.
"""

from __future__ import annotations

import re
import types
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass

PACKAGE = "AzureFunctionsRpcMessages"

# The subset of FunctionRpc.proto (and its NullableTypes.proto and ClaimsIdentityRpc.proto) that
# passes between the host and the worker library: start-up, indexing, function load, invocation.
PROTOCOL = """
message RpcException {
  string source = 3; string stack_trace = 1; string message = 2; bool is_user_exception = 4; string type = 5;
}
message StatusResult {
  enum Status { Failure = 0; Success = 1; Cancelled = 2; }
  Status status = 4; string result = 1; RpcException exception = 2;
}
message NullableString { oneof string { string value = 1; } }
message NullableDouble { oneof double { double value = 1; } }
message NullableBool { oneof bool { bool value = 1; } }
message NullableTimestamp { oneof timestamp { google.protobuf.Timestamp value = 1; } }
message RpcClaim { string value = 1; string type = 2; }
message RpcClaimsIdentity {
  NullableString authentication_type = 1; NullableString name_claim_type = 2; NullableString role_claim_type = 3;
  repeated RpcClaim claims = 4;
}
message RpcHttpCookie {
  enum SameSite { None = 0; Lax = 1; Strict = 2; ExplicitNone = 3; }
  string name = 1; string value = 2; NullableString domain = 3; NullableString path = 4;
  NullableTimestamp expires = 5; NullableBool secure = 6; NullableBool http_only = 7; SameSite same_site = 8;
  NullableDouble max_age = 9;
}
message RpcHttp {
  string method = 1; string url = 2; map<string, string> headers = 3; TypedData body = 4;
  map<string, string> params = 10; string status_code = 12; map<string, string> query = 15;
  bool enable_content_negotiation = 16; TypedData rawBody = 17; repeated RpcClaimsIdentity identities = 18;
  repeated RpcHttpCookie cookies = 19; map<string, NullableString> nullable_headers = 20;
  map<string, NullableString> nullable_params = 21; map<string, NullableString> nullable_query = 22;
}
message ModelBindingData { string version = 1; string source = 2; string content_type = 3; bytes content = 4; }
message CollectionModelBindingData { repeated ModelBindingData model_binding_data = 1; }
message CollectionString { repeated string string = 1; }
message CollectionBytes { repeated bytes bytes = 1; }
message CollectionDouble { repeated double double = 1; }
message CollectionSInt64 { repeated sint64 sint64 = 1; }
message TypedData {
  oneof data {
    string string = 1; string json = 2; bytes bytes = 3; bytes stream = 4; RpcHttp http = 5; sint64 int = 6;
    double double = 7; CollectionBytes collection_bytes = 8; CollectionString collection_string = 9;
    CollectionDouble collection_double = 10; CollectionSInt64 collection_sint64 = 11;
    ModelBindingData model_binding_data = 12; CollectionModelBindingData collection_model_binding_data = 13;
  }
}
enum RpcDataType {
  unknown = 0; string = 1; json = 2; bytes = 3; stream = 4; http = 5; int = 6; double = 7;
  collection_bytes = 8; collection_string = 9; collection_double = 10; collection_sint64 = 11;
}
message RpcSharedMemory { string name = 1; int64 offset = 2; int64 count = 3; RpcDataType type = 4; }
message ParameterBinding {
  string name = 1;
  oneof rpc_data { TypedData data = 2; RpcSharedMemory rpc_shared_memory = 3; }
}
message BindingInfo {
  enum Direction { in = 0; out = 1; inout = 2; }
  enum DataType { undefined = 0; string = 1; binary = 2; stream = 3; }
  string type = 2; Direction direction = 3; DataType data_type = 4; map<string, string> properties = 5;
}
message RpcRetryOptions {
  enum RetryStrategy { exponential_backoff = 0; fixed_delay = 1; }
  int32 max_retry_count = 2; google.protobuf.Duration delay_interval = 3;
  google.protobuf.Duration minimum_interval = 4; google.protobuf.Duration maximum_interval = 5;
  RetryStrategy retry_strategy = 6;
}
message RpcFunctionMetadata {
  string name = 4; string directory = 1; string script_file = 2; string entry_point = 3;
  map<string, BindingInfo> bindings = 6; bool is_proxy = 7; StatusResult status = 8; string language = 9;
  repeated string raw_bindings = 10; string function_id = 13; bool managed_dependency_enabled = 14;
  RpcRetryOptions retry_options = 15; map<string, string> properties = 16;
}
message WorkerInitRequest {
  string host_version = 1; map<string, string> capabilities = 2; string worker_directory = 4;
  string function_app_directory = 5;
}
message WorkerMetadata {
  string runtime_name = 1; string runtime_version = 2; string worker_version = 3; string worker_bitness = 4;
  map<string, string> custom_properties = 5;
}
message WorkerInitResponse {
  string worker_version = 1; map<string, string> capabilities = 2; StatusResult result = 3;
  WorkerMetadata worker_metadata = 4;
}
message FunctionsMetadataRequest { string function_app_directory = 1; }
message FunctionMetadataResponse {
  repeated RpcFunctionMetadata function_metadata_results = 1; StatusResult result = 2;
  bool use_default_metadata_indexing = 3;
}
message FunctionLoadRequest {
  string function_id = 1; RpcFunctionMetadata metadata = 2; bool managed_dependency_enabled = 3;
}
message FunctionLoadResponse { string function_id = 1; StatusResult result = 2; bool is_dependency_downloaded = 3; }
message RpcTraceContext { string trace_parent = 1; string trace_state = 2; map<string, string> attributes = 3; }
message RetryContext { int32 retry_count = 1; int32 max_retry_count = 2; RpcException exception = 3; }
message InvocationRequest {
  string invocation_id = 1; string function_id = 2; repeated ParameterBinding input_data = 3;
  map<string, TypedData> trigger_metadata = 4; RpcTraceContext trace_context = 5; RetryContext retry_context = 6;
}
message InvocationResponse {
  string invocation_id = 1; repeated ParameterBinding output_data = 2; TypedData return_value = 4;
  StatusResult result = 3;
}
message StreamingMessage {
  string request_id = 1;
  oneof content {
    WorkerInitRequest worker_init_request = 17; WorkerInitResponse worker_init_response = 16;
    FunctionLoadRequest function_load_request = 8; FunctionLoadResponse function_load_response = 9;
    InvocationRequest invocation_request = 4; InvocationResponse invocation_response = 5;
    FunctionsMetadataRequest functions_metadata_request = 29; FunctionMetadataResponse function_metadata_response = 30;
  }
}
"""

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "bool": _F.TYPE_BOOL, "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64, "sint64": _F.TYPE_SINT64, "double": _F.TYPE_DOUBLE,
}
_TOKEN = re.compile(r"[A-Za-z_][\w.]*|\d+|[{}=;<>,]")


class _Reader:
    """Reads the proto3 subset above: messages (nested enums, oneofs, maps, repeated fields) and enums."""

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = _TOKEN.findall(text)
        self.at = 0

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.at]
        if expected is not None and token != expected:
            raise ValueError(f"protocol text: expected {expected!r}, found {token!r} (token {self.at})")
        self.at += 1
        return token

    def peek(self) -> str:
        return self.tokens[self.at]

    def file(self) -> descriptor_pb2.FileDescriptorProto:
        file = descriptor_pb2.FileDescriptorProto(
            name="FunctionRpc.proto", package=PACKAGE, syntax="proto3",
            dependency=["google/protobuf/duration.proto", "google/protobuf/timestamp.proto"],
        )
        while self.at < len(self.tokens):
            kind = self.take()
            if kind == "message":
                file.message_type.append(self.message())
            elif kind == "enum":
                file.enum_type.append(self.enum())
            else:
                raise ValueError(f"protocol text: unexpected {kind!r}")
        return file

    def enum(self) -> descriptor_pb2.EnumDescriptorProto:
        enum = descriptor_pb2.EnumDescriptorProto(name=self.take())
        self.take("{")
        while self.peek() != "}":
            name = self.take()
            self.take("=")
            enum.value.add(name=name, number=int(self.take()))
            self.take(";")
        self.take("}")
        return enum

    def message(self) -> descriptor_pb2.DescriptorProto:
        message = descriptor_pb2.DescriptorProto(name=self.take())
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "enum":
                self.take()
                message.enum_type.append(self.enum())
            elif self.peek() == "oneof":
                self.take()
                message.oneof_decl.add(name=self.take())
                self.take("{")
                while self.peek() != "}":
                    self.field(message, oneof=len(message.oneof_decl) - 1)
                self.take("}")
            else:
                self.field(message)
        self.take("}")
        return message

    def field(self, message: descriptor_pb2.DescriptorProto, oneof: int | None = None) -> None:
        label = _F.LABEL_OPTIONAL
        if self.peek() == "repeated":
            self.take()
            label = _F.LABEL_REPEATED
        type_name = self.take()
        if type_name == "map":
            self.take("<")
            key = self.take()
            self.take(",")
            value = self.take()
            self.take(">")
            name = self.take()
            # A map is a repeated field of a nested entry message named after the field.
            entry = message.nested_type.add(name="".join(part[:1].upper() + part[1:] for part in name.split("_"))
                                            + "Entry")
            entry.options.map_entry = True
            _typed(entry.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL), key)
            _typed(entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL), value)
            label, type_name = _F.LABEL_REPEATED, entry.name
        else:
            name = self.take()
        self.take("=")
        field = message.field.add(name=name, number=int(self.take()), label=label)
        _typed(field, type_name)
        if oneof is not None:
            field.oneof_index = oneof
        self.take(";")


def _typed(field: descriptor_pb2.FieldDescriptorProto, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:  # a message or an enum: the pool resolves the name by protobuf's scoping rules
        field.type_name = f".{type_name}" if type_name.startswith("google.") else type_name


def _build() -> types.SimpleNamespace:
    pool = descriptor_pool.DescriptorPool()
    for known in (duration_pb2, timestamp_pb2):
        pool.AddSerializedFile(known.DESCRIPTOR.serialized_pb)
    file = pool.AddSerializedFile(_Reader(PROTOCOL).file().SerializeToString())
    classes: dict[str, Any] = {name: GetMessageClass(message) for name, message in file.message_types_by_name.items()}
    return types.SimpleNamespace(**classes)


protos = _build()
"""The message classes by name (``protos.InvocationRequest`` ...), as the proxy hands the worker its module."""
