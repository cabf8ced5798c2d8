"""Readings that field devices and head-end systems push over HTTP (`[devices]`):
`push.install` adds `POST /api/v1/readings` to `meter-gateway run`. The item format is shared
with MQTT (adapters/device_items/items.py); `[devices] max_items` bounds both."""
