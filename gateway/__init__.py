"""meter-gateway: one validated stream of meter readings from every channel."""

__version__ = "0.1.0"
