"""Business customers: legal entities and entrepreneurs, identified by contract and contact.

A business customer is an account of the registry held by a legal entity (`legal`) or an
individual entrepreneur (`entrepreneur`), with a contract number, a name, an INN and its
contact persons; its meters are the contract's metering points (`meters.point` names each). The
registry CSV carries them in optional columns (README, "Registry CSV"; parsed here, stored by
gateway/registry.py in gateway/store/schema_business.py).

They are identified by the contract number plus a contact person's phone verified with a
one-time code sent to that phone (gateway/verification.py), never by an account number alone:
the residents' doors that identify by account (the cabinet's sign-in, Telegram linking) refuse
a business account as they refuse an unknown one. What is here:

- the rules of the registry's columns: the INN's length and check digits (python-stdnum's
  `stdnum.ru.inn`), the contract number as it is looked up, the contacts' cell;
- lookups: a customer by account, a contact by contract and phone (the sign-in), the desk's
  search conditions (contract, INN, name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import ColumnElement
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.ru import inn as inn_number

from gateway.bounds import CONTROL
from gateway.privacy import normalize_phone
from gateway.store.schema import accounts
from gateway.store.schema_business import business_contacts, business_customers

KIND_RU = {"legal": "юридическое лицо", "entrepreneur": "индивидуальный предприниматель"}
# What the registry's `kind` column may say: empty or `person` is a resident.
_KINDS = {
    "": None,
    "person": None,
    "legal": "legal",
    "юл": "legal",
    "entrepreneur": "entrepreneur",
    "ип": "entrepreneur",
}
INN_DIGITS = {"legal": 10, "entrepreneur": 12}
BUSINESS_COLUMNS = ("kind", "contract", "name", "inn", "point", "contacts")
MAX_CONTACTS = 20
_CONTRACT = re.compile(r"^[0-9A-Za-zА-Яа-яЁё№/.\- ]{1,32}$")
# A phone as people write it: +79161234567, +7 916 123-45-67, 8 (916) 123-45-67.
_PHONE = re.compile(r"(?:\+7|\b8)[\s(-]*\d{3}[\s)-]*\d{3}[\s-]*\d{2}[\s-]*\d{2}\b|\+\d{10,15}")
_EMAIL = re.compile(r"<?([^\s<>@;,]{1,64}@[^\s<>@;,]{1,190}\.[^\s<>@;,]{2,63})>?")


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact person of a contract: a name, a phone (E.164) and an e-mail, either may be empty."""

    name: str
    phone: str | None
    email: str | None
    id: int | None = None  # once stored


@dataclass(frozen=True, slots=True)
class BusinessRow:
    """What the registry says of a business customer (the same on each of its rows)."""

    kind: str
    contract: str
    name: str
    inn: str
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class Customer:
    """A stored business customer with its contacts."""

    account_id: int
    number: str
    kind: str
    contract: str
    name: str
    inn: str
    contacts: tuple[Contact, ...]
    branch: str | None = None  # the account's (gateway/branches.py)

    @property
    def kind_ru(self) -> str:
        return KIND_RU.get(self.kind, self.kind)


def mask_email(email: str | None) -> str:
    """`iv***@zavod.ru`: staff see whose address it is, not the address to sign anything up with."""
    if not email or "@" not in email:
        return ""
    name, _, domain = email.partition("@")
    return f"{name[:2]}***@{domain}"


def contract_key(text: str) -> str:
    """The contract number as looked up: upper case, without spaces and the "№" sign, so
    `№ 12-345/2024` and `12-345/2024` are one contract."""
    return re.sub(r"[\s№]", "", text).upper()[:32]


def check_inn(inn: str, kind: str) -> str:
    """The INN of a `legal` (10 digits) or `entrepreneur` (12 digits), its check digits right."""
    digits = INN_DIGITS[kind]
    if not re.fullmatch(r"\d+", inn) or len(inn) != digits:
        raise ValueError(f"inn {inn!r} of a {kind} is {digits} digits")
    try:
        inn_number.validate(inn)
    except StdnumError:
        raise ValueError(f"inn {inn!r}: its check digits are wrong (a typo?)") from None
    return inn


def parse_contacts(cell: str) -> tuple[Contact, ...]:
    """`ФИО <e-mail> +79161234567; ФИО 8 (916) ...`: entries split by `;`, in each the phone and the
    e-mail found wherever they stand (the phone kept as E.164) and the rest the name."""
    found = []
    for entry in filter(None, (e.strip() for e in cell.split(";"))):
        phones = _PHONE.findall(entry)
        emails = _EMAIL.findall(entry)
        if len(phones) > 1 or len(emails) > 1:
            raise ValueError(
                f"contact {entry[:60]!r}: one phone and one e-mail per contact (split contacts by ;)"
            )
        rest = _EMAIL.sub(" ", _PHONE.sub(" ", entry))
        name = " ".join(rest.replace("<", " ").replace(">", " ").split()).strip(" ,")
        if not name:
            raise ValueError(f"contact {entry[:60]!r} has no name")
        if not phones and not emails:
            raise ValueError(f"contact {name[:60]!r} has neither a phone like +79161234567 nor an e-mail")
        found.append(
            Contact(
                name[:120],
                normalize_phone(phones[0]) if phones else None,
                emails[0].lower() if emails else None,
            )
        )
    if len(found) > MAX_CONTACTS:
        raise ValueError(f"contacts: at most {MAX_CONTACTS}")
    return tuple(found)


def parse_business(row: Mapping[str, str]) -> BusinessRow | None:
    """The business columns of one registry row (None: a resident's account); ValueError names
    what is wrong."""
    kind_text = row.get("kind", "").strip().lower()
    if kind_text not in _KINDS:
        raise ValueError(f"kind {kind_text!r} is not person, legal (ЮЛ) or entrepreneur (ИП)")
    kind = _KINDS[kind_text]
    if kind is None:
        stray = [c for c in ("contract", "name", "inn", "contacts") if row.get(c)]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} given for a person's account: set kind to legal or entrepreneur"
            )
        return None
    contract = " ".join(row.get("contract", "").split())
    if not _CONTRACT.match(contract):
        raise ValueError(
            f"contract {contract!r}: 1-32 letters, digits, spaces and № / . - (the contract number)"
        )
    name = " ".join(row.get("name", "").split())
    if not name or len(name) > 255 or CONTROL.search(name):
        raise ValueError("name: the customer's name, 1-255 characters")
    contacts = parse_contacts(row.get("contacts", ""))
    if not any(c.phone for c in contacts):
        raise ValueError("contacts: at least one contact with a phone (they sign in with it)")
    return BusinessRow(kind, contract, name, check_inn(row.get("inn", "").strip(), kind), contacts)


# -- the registry import ---------------------------------------------------------------------


async def sync_customers(
    conn: AsyncConnection, account_ids: Mapping[str, int], given: Mapping[str, BusinessRow | None]
) -> set[str]:
    """Store what the registry says of these accounts (number -> its business row, None for a
    resident's): customers added, changed or dropped, contacts replaced when they changed.
    Returns the accounts whose business data changed."""
    ids = [account_ids[n] for n in given]
    have = {
        r.account_id: r
        for r in await _rows(conn, select(business_customers), business_customers.c.account_id, ids)
    }
    contacts: dict[int, list[tuple[str, str | None, str | None]]] = {}
    for r in await _rows(
        conn, select(business_contacts).order_by(business_contacts.c.id), business_contacts.c.account_id, ids
    ):
        contacts.setdefault(r.account_id, []).append((r.name, r.phone, r.email))
    changed: set[str] = set()
    # A contract the file gives another account than the database does moves: its old holder's
    # row goes first, or the two would clash on the unique contract number meanwhile.
    wanted = {contract_key(row.contract): account_ids[n] for n, row in given.items() if row is not None}
    holders = await _rows(
        conn,
        select(business_customers.c.account_id, business_customers.c.contract_key),
        business_customers.c.contract_key,
        list(wanted),
    )
    moved = [h.account_id for h in holders if wanted[h.contract_key] != h.account_id]
    if moved:
        await conn.execute(delete(business_customers).where(business_customers.c.account_id.in_(moved)))
        for account_id in moved:
            have.pop(account_id, None)
    for number, row in given.items():
        account_id = account_ids[number]
        old = have.get(account_id)
        if row is None:
            if old is not None:
                await conn.execute(
                    delete(business_contacts).where(business_contacts.c.account_id == account_id)
                )
                await conn.execute(
                    delete(business_customers).where(business_customers.c.account_id == account_id)
                )
                changed.add(number)
            continue
        values = {
            "kind": row.kind,
            "contract": row.contract,
            "contract_key": contract_key(row.contract),
            "name": row.name,
            "inn": row.inn,
        }
        if old is None:
            await conn.execute(insert(business_customers).values(account_id=account_id, **values))
            changed.add(number)
        elif any(getattr(old, k) != v for k, v in values.items()):
            await conn.execute(
                update(business_customers)
                .where(business_customers.c.account_id == account_id)
                .values(**values)
            )
            changed.add(number)
        people = [(c.name, c.phone, c.email) for c in row.contacts]
        if contacts.get(account_id, []) != people:
            await conn.execute(delete(business_contacts).where(business_contacts.c.account_id == account_id))
            await conn.execute(
                insert(business_contacts),
                [{"account_id": account_id, "name": n, "phone": p, "email": e} for n, p, e in people],
            )
            changed.add(number)
    return changed


async def _rows(conn: AsyncConnection, query: Any, column: Any, ids: list[Any]) -> list[Any]:
    """`query` where `column` is one of `ids`, in chunks."""
    found: list[Any] = []
    for i in range(0, len(ids), 2000):  # below SQLite's limit of bound parameters
        found += (await conn.execute(query.where(column.in_(ids[i : i + 2000])))).all()
    return found


# -- lookups -----------------------------------------------------------------------------------


async def customers_of(engine: AsyncEngine, account_ids: Iterable[int]) -> dict[int, Customer]:
    """The business customers among these accounts, with their contacts."""
    async with engine.connect() as conn:
        return await customers_in(conn, account_ids)


async def customers_in(conn: AsyncConnection, account_ids: Iterable[int]) -> dict[int, Customer]:
    """`customers_of` on a connection the caller holds."""
    ids = list(account_ids)
    if not ids:
        return {}
    rows = await _rows(
        conn,
        select(business_customers, accounts.c.number, accounts.c.branch).join(
            accounts, accounts.c.id == business_customers.c.account_id
        ),
        business_customers.c.account_id,
        ids,
    )
    people = await _rows(
        conn, select(business_contacts).order_by(business_contacts.c.id), business_contacts.c.account_id, ids
    )
    by_account: dict[int, list[Contact]] = {}
    for c in people:
        by_account.setdefault(c.account_id, []).append(Contact(c.name, c.phone, c.email, c.id))
    return {
        r.account_id: Customer(
            r.account_id,
            r.number,
            r.kind,
            r.contract,
            r.name,
            r.inn,
            tuple(by_account.get(r.account_id, ())),
            r.branch,
        )
        for r in rows
    }


async def customer(engine: AsyncEngine, number: str) -> Customer | None:
    """The business customer holding this account, or None (a resident's, or no such account)."""
    async with engine.connect() as conn:
        account_id = (
            await conn.execute(select(accounts.c.id).where(accounts.c.number == number))
        ).scalar_one_or_none()
    if account_id is None:
        return None
    return (await customers_of(engine, [account_id])).get(account_id)


async def is_business(engine: AsyncEngine, number: str) -> bool:
    """Is this account held by a business customer (identified only by contract and contact)?"""
    query = (
        select(business_customers.c.account_id)
        .join(accounts, accounts.c.id == business_customers.c.account_id)
        .where(accounts.c.number == number)
    )
    async with engine.connect() as conn:
        return (await conn.execute(query)).first() is not None


async def contact_of(engine: AsyncEngine, contract: str, phone: str) -> tuple[Customer, Contact] | None:
    """The customer of this contract number and its contact with this phone, or None when either
    is unknown (the sign-in says the same either way)."""
    normalized = normalize_phone(phone)
    key = contract_key(contract)
    if not key or not normalized:
        return None
    async with engine.connect() as conn:
        account_id = (
            await conn.execute(
                select(business_customers.c.account_id).where(business_customers.c.contract_key == key)
            )
        ).scalar_one_or_none()
    if account_id is None:
        return None
    found = (await customers_of(engine, [account_id])).get(account_id)
    if found is None:
        return None
    person = next((c for c in found.contacts if c.phone == normalized), None)
    return (found, person) if person is not None else None


def search_conditions(query: str) -> list[ColumnElement[bool]]:
    """The desk's search (gateway/account_views.py `find_accounts`) for business customers:
    conditions on `accounts` matching a contract number, an INN (10 or 12 digits) or part of
    the name."""
    q = " ".join(CONTROL.sub(" ", query).split())[:100]
    if not q:
        return []
    holders = select(business_customers.c.account_id)
    conditions: list[ColumnElement[bool]] = [
        accounts.c.id.in_(holders.where(business_customers.c.contract_key == contract_key(q)))
    ]
    if re.fullmatch(r"\d{10}|\d{12}", q):
        conditions.append(accounts.c.id.in_(holders.where(business_customers.c.inn == q)))
    if len(q) >= 3:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # SQLite lowers only ASCII: the name as written is tried too, in the forms people type.
        names = [func.lower(business_customers.c.name).like(pattern, escape="\\")]
        names += [
            business_customers.c.name.like("%" + v + "%")
            for v in {q, q.capitalize(), q.upper()}
            if "%" not in v and "_" not in v
        ]
        conditions.append(accounts.c.id.in_(holders.where(or_(*names))))
    return conditions
