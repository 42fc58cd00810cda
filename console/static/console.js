// meterway console: copy buttons, confirmations, the traffic split, the adapter upload and the playground.
"use strict";
(function () {
  const csrf = document.body.dataset.csrf || "";

  // A page that answered a POST (a new key's secret) forgets it: a reload shows the plain page.
  if (document.querySelector("[data-once]")) history.replaceState(null, "", location.pathname);

  document.querySelectorAll("[data-copy]").forEach((button) => button.addEventListener("click", async () => {
    const text = document.getElementById(button.dataset.copy).textContent;
    try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; }
    catch (err) { button.textContent = "Select and copy"; }
  }));

  document.querySelectorAll("form[data-confirm]").forEach((form) => form.addEventListener("submit", (event) => {
    if (!confirm(form.dataset.confirm)) event.preventDefault();
  }));

  // Traffic split: moving one slider spreads the difference over the others, so the total stays 100.
  document.querySelectorAll("form[data-split]").forEach((form) => {
    const sliders = Array.from(form.querySelectorAll("input[data-share]"));
    const show = () => sliders.forEach((s) => { s.nextElementSibling.value = s.value; });
    sliders.forEach((moved) => moved.addEventListener("input", () => {
      const others = sliders.filter((s) => s !== moved);
      let rest = 100 - Number(moved.value);
      if (!others.length) { moved.value = 100; show(); return; }
      const before = others.reduce((sum, s) => sum + Number(s.value), 0);
      others.forEach((s, i) => {
        const share = i === others.length - 1 ? rest
          : Math.round(before ? Number(s.value) * (100 - Number(moved.value)) / before : rest / (others.length - i));
        s.value = Math.max(0, Math.min(rest, share)); rest -= Number(s.value);
      });
      show();
    }));
  });

  const upload = document.getElementById("upload");
  if (upload) upload.addEventListener("submit", (event) => {
    event.preventDefault();
    const request = new XMLHttpRequest();
    const progress = document.getElementById("up-progress"), status = document.getElementById("up-status");
    request.upload.addEventListener("progress", (e) => { if (e.lengthComputable) progress.value = 100 * e.loaded / e.total; });
    request.addEventListener("load", () => {
      const body = JSON.parse(request.responseText || "{}");
      status.textContent = request.status < 300 ? "Uploaded " + body.id : "Refused: " + ((body.error || {}).message || request.status);
      if (request.status < 300) setTimeout(() => location.reload(), 800);
    });
    request.open("POST", upload.action);
    request.setRequestHeader("X-CSRF-Token", csrf);
    request.send(new FormData(upload));
  });

  const chat = document.getElementById("chat");
  if (chat) chat.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = document.getElementById("chat-answer"), usage = document.getElementById("chat-usage");
    answer.textContent = ""; usage.textContent = "…";
    const body = { model: chat.model.value, max_tokens: Number(chat.max_tokens.value),
                   messages: [{ role: "user", content: chat.prompt.value }] };
    const response = await fetch("/console/playground/chat", { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf } });
    if (!response.ok) { usage.textContent = "Refused (" + response.status + ")"; return; }
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const events = buffer.split("\n\n"); buffer = events.pop();
      events.forEach((raw) => showEvent(raw, answer, usage));
    }
  });

  function showEvent(raw, answer, usage) {
    const data = raw.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
    if (!data || data === "[DONE]") return;
    const chunk = JSON.parse(data);
    if (chunk.error) { usage.textContent = "Error: " + chunk.error.message; return; }
    if (chunk.meterway_cost) {
      usage.textContent = chunk.prompt_tokens + " prompt + " + chunk.completion_tokens + " completion tokens, cost "
        + chunk.meterway_cost + " " + chunk.currency;
      usage.dataset.done = "1"; return;
    }
    (chunk.choices || []).forEach((c) => { if (c.delta && c.delta.content) answer.textContent += c.delta.content; });
  }
})();
