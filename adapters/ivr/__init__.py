"""Readings by telephone (`[ivr]`): Asterisk calls the gateway over FastAGI.

`agi` speaks the AGI protocol and runs the FastAGI server (connection cap, handshake timeout),
`call` is the call dialogue (what is asked, in which order, what is submitted), `menu` is the
menu and its prompt catalogue as data, checked against the contact-centre standard;
`channel.install` wires the server into `meter-gateway run`. The prompts themselves are
`adapters/ivr/prompts.toml` (package data, shipped in the wheel), rendered by
`scripts/render-prompts.sh`.
"""
