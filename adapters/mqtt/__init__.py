"""Readings that meters and concentrators publish to an MQTT broker (`[mqtt]`): `subscriber.install`
wires the subscription into `meter-gateway run`."""
