"""The Kafka wire contract: feature messages in; results, solver requests, dead letters out.

Pure code (no Kafka, no ONNX): ``decode`` turns message bytes into a Sample or a Rejection,
``encode`` turns a batch's StrictResult into result and solver-request bytes, ``deadletter``
builds the dead-letter headers. ``models`` describes the same contract with pydantic for the
JSON Schemas in ``schemas/``; it is not on the hot path.
"""
