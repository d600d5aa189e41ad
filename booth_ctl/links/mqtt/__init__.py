"""The MES link over MQTT (CONTRACT section 3): status, telemetry, events, commands and replies."""
