"""Billing's door: the HTTP API through which billing systems lease batches of accepted readings,
commit them and read the working-day SLA view (`api.py`, README "Billing")."""
