"""What field devices send, whichever door they use: the reading item format and its bounds
(`items.py`) and the `[devices]` section (`config.py`: push tokens and `max_items`, which bounds
an HTTP push and an MQTT message alike). Shared by `adapters/devices/` (HTTP push) and
`adapters/mqtt/`, which stay independent of each other."""
