"""The Kafka wire contract: feature messages in; results, solver requests, dead letters out."""
