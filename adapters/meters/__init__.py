"""Meters the gateway reads itself: the bus workers, the Modbus link, firmware profiles as data
(their schema, codec and read planning) and the simulated meters of the tests and the demo.

`poller.install` wires the `[modbus]` buses into `meter-gateway run`.
"""
