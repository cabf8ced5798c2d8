"""The web door: the residents' cabinet at `/cabinet/` (cabinet.py), the business customers'
cabinet at `/business/` (business.py) and the operators' desk at `/operator/` (desk.py), sites
with their shared sign-in pieces: cookie sessions and their key
(sessions.py), CSRF (csrf.py), sign-in limits and the client address (signin.py), staff
passwords (passwords.py), templates, filters and error pages (pages.py, templates/, static/).
Residents are verified by the core (gateway/verification.py). Its `[cabinet]` and `[operators]`
sections (config.py), tables (tables.py), `operator` commands and demo employee (commands.py)
and privacy report (privacy.py) are declared in pyproject.toml."""
