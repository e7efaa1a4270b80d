"""The remote_write messages, v1 (``prometheus.WriteRequest``) and v2
(``io.prometheus.write.v2.Request``), as protobuf classes built at import from descriptors
written here (see ``remote.proto`` beside this file for the same schema as a .proto). Only the
fields airisd reads are declared: protobuf skips the others, so exemplars, native histograms and
metadata cost nothing but are not stored.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_V1 = """
name: "airisd/prometheus_remote_v1.proto" package: "prometheus" syntax: "proto3"
message_type {
  name: "WriteRequest"
  field { name: "timeseries" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".prometheus.TimeSeries" }
}
message_type {
  name: "TimeSeries"
  field { name: "labels" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".prometheus.Label" }
  field { name: "samples" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".prometheus.Sample" }
  field { name: "histograms" number: 4 label: LABEL_REPEATED type: TYPE_BYTES }
}
message_type {
  name: "Label"
  field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "Sample"
  field { name: "value" number: 1 label: LABEL_OPTIONAL type: TYPE_DOUBLE }
  field { name: "timestamp" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
}
"""

_V2 = """
name: "airisd/prometheus_remote_v2.proto" package: "io.prometheus.write.v2" syntax: "proto3"
message_type {
  name: "Request"
  field { name: "symbols" number: 4 label: LABEL_REPEATED type: TYPE_STRING }
  field { name: "timeseries" number: 5 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".io.prometheus.write.v2.TimeSeries" }
}
message_type {
  name: "TimeSeries"
  field { name: "labels_refs" number: 1 label: LABEL_REPEATED type: TYPE_UINT32 }
  field { name: "samples" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".io.prometheus.write.v2.Sample" }
  field { name: "histograms" number: 3 label: LABEL_REPEATED type: TYPE_BYTES }
  field { name: "exemplars" number: 4 label: LABEL_REPEATED type: TYPE_BYTES }
}
message_type {
  name: "Sample"
  field { name: "value" number: 1 label: LABEL_OPTIONAL type: TYPE_DOUBLE }
  field { name: "timestamp" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
}
"""

_POOL = descriptor_pool.DescriptorPool()


def _classes(text: str, *names: str) -> list[Any]:
    fdp = text_format.Parse(text, descriptor_pb2.FileDescriptorProto())
    fd = _POOL.Add(fdp) or _POOL.FindFileByName(fdp.name)
    _ = fd
    return [message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{fdp.package}.{n}")) for n in names]


WriteRequest, TimeSeries, Label, Sample = _classes(_V1, "WriteRequest", "TimeSeries", "Label", "Sample")
WriteRequestV2, TimeSeriesV2, SampleV2 = _classes(_V2, "Request", "TimeSeries", "Sample")
