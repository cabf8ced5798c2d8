"""How the mail door reads a message: the resident's own words out of what Russian mail clients
send (HTML, quoted replies, signatures), and which messages must never be answered."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from adapters.mail.body import html_to_text, without_quotes
from adapters.mail.message import MailIn, read_message
from tests.adapters.mail.mail_rig import ADDRESS, letter

OWN = ADDRESS


def read(msg: EmailMessage | bytes, authserv_id: str = "", max_parts: int = 50) -> MailIn:
    data = msg if isinstance(msg, bytes) else msg.as_bytes()
    return read_message(data, OWN, max_parts, authserv_id)


@pytest.mark.parametrize(
    ("text", "own"),
    [
        # Gmail in Russian
        (
            "1000001 12345\n\nчт, 3 дек. 2026 г. в 12:34, Приём показаний <readings@retailer.test>:\n> Квитанция № 9",
            "1000001 12345",
        ),
        # Яндекс: the attribution line, then the quote
        (
            'Т1 100 Т2 50\n\n03.12.2026, 12:34, "Приём показаний" <readings@retailer.test>:\n> 99999',
            "Т1 100 Т2 50",
        ),
        # Outlook in Russian: a header block
        (
            "1000001 12345\n\nОт: Приём показаний <readings@retailer.test>\nОтправлено: 3 декабря 2026 г. 12:34\n"
            "Кому: ivan@example.ru\nТема: Показания",
            "1000001 12345",
        ),
        ("1000001 12345\n-----Original Message-----\nFrom: x", "1000001 12345"),
        (
            "Здравствуйте!\n1000001 12345\nС уважением,\nИван Петров\n+7 916 123-45-67",
            "Здравствуйте!\n1000001 12345",
        ),
        ("1000001 12345\n-- \nИван", "1000001 12345"),
        ("1000001 12345\n\nОтправлено с iPhone", "1000001 12345"),
        ("1000001 12345\n\nОтправлено из мобильной Почты Mail.ru", "1000001 12345"),
        ("Спасибо!\n1000001 12345", "Спасибо!\n1000001 12345"),  # a closing before any words is kept
    ],
)
def test_quotes_and_signatures_are_cut_off(text: str, own: str) -> None:
    assert without_quotes(text) == own


def test_html_body_without_quoted_parts() -> None:
    html = (
        "<html><head><style>p{color:red}</style><title>x</title></head><body>"
        "<p>1000001&nbsp;12345</p><div class='gmail_quote'>вт, 17 нояб.:<blockquote>Квитанция № 999"
        "<div>nested</div></blockquote></div><p>ещё</p><script>var a=1</script></body></html>"
    )
    assert html_to_text(html) == "1000001 12345\nещё"


def test_a_letter_is_read_from_its_plain_part_and_its_subject_cleaned() -> None:
    msg = letter("Иван <IVAN@Example.RU>", "1000001 12345", subject="Re: Fwd: Показания", html="<p>other</p>")
    mail = read(msg)
    assert mail.sender == "ivan@example.ru"
    assert mail.body == "1000001 12345" and mail.subject == "Показания"
    assert mail.texts() == ["1000001 12345", "Показания", "Показания\n1000001 12345"]
    assert mail.automatic is None and not mail.too_large


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({"Auto-Submitted": "auto-replied"}, "auto-reply"),
        ({"Auto-Submitted": "auto-generated"}, "auto-reply"),
        ({"X-Autoreply": "yes"}, "auto-reply"),
        ({"X-Auto-Response-Suppress": "DR, OOF, AutoReply"}, "auto-reply"),
        ({"Precedence": "junk"}, "list"),
        ({"List-Id": "<news.example.ru>"}, "list"),
        ({"Return-Path": "<>"}, "bounce"),
        ({"X-Meter-Gateway": "answer"}, "loop"),
        ({"X-Loop": ADDRESS}, "loop"),
    ],
)
def test_automatic_mail_is_recognised(headers: dict[str, str], kind: str) -> None:
    msg = letter("ivan@example.ru", "1000001 12345")
    for name, value in headers.items():
        msg[name] = value
    assert read(msg).automatic == kind


def test_senders_that_never_take_answers() -> None:
    assert read(letter("MAILER-DAEMON@mx.example.ru", "x")).automatic == "bounce"
    assert read(letter("no-reply@shop.example.ru", "x")).automatic == "auto-reply"
    assert read(letter(f"Приём <{ADDRESS.upper()}>", "x")).automatic == "loop"
    assert read(letter("ivan@example.ru", "x", Auto_Submitted="no")).automatic is None
    report = EmailMessage()
    report["From"] = "ivan@example.ru"
    report.set_content("x")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; boundary="b"')
    assert read(report).automatic == "bounce"


def test_authentication_results_of_the_configured_server_only() -> None:
    def with_results(*values: str) -> EmailMessage:
        msg = letter("ivan@example.ru", "1000001 12345")
        for v in values:
            msg["Authentication-Results"] = v
        return msg

    ours = "mx.retailer.test"
    assert read(with_results(), "").authenticated is True  # nobody asked
    assert read(with_results(), ours).authenticated is False
    assert read(with_results(f"{ours}; dmarc=pass header.from=example.ru"), ours).authenticated
    assert read(with_results(f"{ours}; dkim=pass header.d=example.ru"), ours).authenticated
    assert read(with_results(f"{ours}; spf=pass smtp.mailfrom=ivan@example.ru"), ours).authenticated
    # a pass for another domain, a fail, or a result someone else wrote vouch for nothing
    assert not read(with_results(f"{ours}; dkim=pass header.d=evil.test"), ours).authenticated
    assert not read(with_results(f"{ours}; dmarc=fail header.from=example.ru"), ours).authenticated
    assert not read(with_results("mx.evil.test; dmarc=pass"), ours).authenticated


def test_keys_bounds_and_parts() -> None:
    msg = letter("ivan@example.ru", "1000001 12345", message_id="<abc@example.ru>")
    assert read(msg).key == "<abc@example.ru>"
    long_id = "<" + "a" * 200 + "@example.ru>"
    assert read(letter("ivan@example.ru", "x", message_id=long_id)).key.startswith("sha256:")
    raw = b"From: ivan@example.ru\r\nSubject: x\r\n\r\n1000001 12345\r\n"
    assert read(raw).key == read(raw).key and read(raw).message_id is None
    many = letter("ivan@example.ru", "1000001 12345")
    for i in range(5):
        many.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{i}.bin")
    assert read(many, max_parts=4).too_large and read(many, max_parts=4).body == ""
    assert not read(many, max_parts=10).too_large
    header_only = read_message(b"From: ivan@example.ru\r\nSubject: 1000001 1\r\n\r\n", OWN, 50, whole=False)
    assert header_only.too_large and header_only.body == ""
