"""Wire codecs: remote write (protobuf + snappy block) and the Prometheus text exposition format."""
