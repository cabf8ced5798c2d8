/* The paper forms' grid on the operators' desk (adapters/web/paper.py): keyboard only.
   Account + Enter: its meter and zones are looked up; each zone + Enter; the last zone + Enter
   checks the row (nothing is stored) and goes to the next row. Enter on an empty account goes to
   «Сохранить бланки». Without this script the form still works: rows are checked when saved. */
"use strict";
(function () {
  const form = document.getElementById("paper");
  const body = document.getElementById("rows");
  const maxRows = Number(form.dataset.maxRows || "200");
  const received = document.getElementById("received_on");

  function cells(tr) {
    const i = tr.dataset.row;
    return {
      account: document.getElementById("r" + i + "-account"),
      meter: document.getElementById("r" + i + "-meter"),
      values: [1, 2, 3].map(function (z) { return document.getElementById("r" + i + "-v" + z); }),
      check: document.getElementById("r" + i + "-check"),
    };
  }

  function say(row, text, state) {
    row.check.textContent = text;
    row.check.closest("tr").dataset.state = state;
  }

  function nextRow(tr) {
    let next = tr.nextElementSibling;
    if (!next && body.children.length < maxRows) {
      next = tr.cloneNode(true);
      const n = String(body.children.length + 1);
      next.dataset.row = n;
      delete next.dataset.state;
      next.querySelector("td").textContent = n;
      next.querySelectorAll("label").forEach(function (label) {
        label.htmlFor = label.htmlFor.replace(/^r\d+-/, "r" + n + "-");
        label.textContent = label.textContent.replace(/^Строка \d+/, "Строка " + n);
      });
      next.querySelectorAll("input, output").forEach(function (el) {
        el.id = el.id.replace(/^r\d+-/, "r" + n + "-");
        if (el.name) { el.name = el.id; }
        if (el.tagName === "INPUT") { el.value = ""; el.disabled = false; }
        if (el.tagName === "OUTPUT") { el.textContent = ""; }
        const label = el.getAttribute("aria-label");
        if (label) { el.setAttribute("aria-label", label.replace(/^Строка \d+/, "Строка " + n)); }
      });
      body.appendChild(next);
    }
    return next;
  }

  async function lookUp(tr) {
    const row = cells(tr);
    const number = row.account.value.replace(/\s+/g, "");
    const answer = await (await fetch("/operator/paper/account?number=" + encodeURIComponent(number), { credentials: "same-origin" })).json();
    if (!answer.found) {
      say(row, answer.message, "bad");
      row.account.focus();
      return;
    }
    const meter = answer.meters[0];
    if (answer.meters.length > 1 && !row.meter.value) {
      say(row, "Счётчики: " + answer.meters.map(function (m) { return m.serial; }).join(", ") + ". Введите номер счётчика", "warn");
      row.meter.focus();
      return;
    }
    const chosen = answer.meters.find(function (m) { return m.serial === row.meter.value; }) || meter;
    row.meter.value = chosen.serial;
    row.values.forEach(function (input, k) {
      input.disabled = k >= chosen.zones.length;
      if (k < chosen.zones.length) {
        const name = chosen.names[k];
        input.setAttribute("aria-label", "Строка " + tr.dataset.row + ": " + name);
        input.placeholder = name;
      }
    });
    say(row, "Счётчик " + chosen.serial + ": " + chosen.names.join(", "), "");
    row.values[0].focus();
  }

  async function checkRow(tr) {
    const row = cells(tr);
    const query = new URLSearchParams({
      account: row.account.value.replace(/\s+/g, ""),
      meter: row.meter.value,
      received_on: received.value,
    });
    row.values.forEach(function (input, k) { if (!input.disabled && input.value) { query.set("v" + (k + 1), input.value); } });
    const answer = await (await fetch("/operator/paper/check?" + query.toString(), { credentials: "same-origin" })).json();
    const state = answer.status === "accepted" ? "ok" : answer.status === "rejected" ? "bad" : "warn";
    say(row, answer.said + (answer.reasons.length ? ": " + answer.reasons.join("; ") : ""), state);
    const next = nextRow(tr);
    if (next) { cells(next).account.focus(); } else { document.getElementById("save").focus(); }
  }

  form.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.target.tagName !== "INPUT") { return; }
    const tr = event.target.closest("tr[data-row]");
    if (!tr) { event.preventDefault(); return; }
    event.preventDefault();
    const row = cells(tr);
    const target = event.target;
    if (target === row.account) {
      if (!row.account.value.trim()) { document.getElementById("save").focus(); return; }
      lookUp(tr);
    } else if (target === row.meter) {
      lookUp(tr);
    } else {
      const open = row.values.filter(function (input) { return !input.disabled; });
      const k = open.indexOf(target);
      if (k >= 0 && k < open.length - 1) { open[k + 1].focus(); } else { checkRow(tr); }
    }
  });
})();
