"""Billing sinks: the gateway delivers batches itself (README, "Billing sinks"). The rules (roles,
idempotency keys, commits on acknowledgement, retries, state) are the core's
(gateway/billing_delivery.py); this package brings the transports and wires the `[sinks]`
section into `meter-gateway run` (`service.py`): `http.py`, `folder.py`, `nats.py`; `config.py`
is the section (imported while the configuration loads, so this package imports nothing here).
"""
