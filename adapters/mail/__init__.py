"""The mail door: residents' readings by e-mail, answered by e-mail.

The readings mailbox is read over IMAP (`mailbox.py`, aioimaplib; IDLE where the server offers
it) by a background task of `meter-gateway run` (`door.py`); each message is read
(`message.py`: sender, automatic or not, the text; `body.py`: HTML as text, quotes and
signatures cut off), decided through the core's intake with the residents' grammar and answered
by SMTP in Russian, threaded to it (`inbox.py`, `outbox.py`, `texts.py`). `tables.py` keeps
each message handled (stored before answered, answered once, the reply budget); `config.py` is
the `[mail]` section; `privacy.py` says what of a resident the door keeps; `dovecot.py` runs a
private Dovecot for the demo and the tests. Declared in pyproject.toml (gateway/plugins.py).
"""
