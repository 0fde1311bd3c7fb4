// qualgent dashboard: keeps a page current from the server's event stream (GET /api/events), no reload.
// When a job changes, the page's live part (#live-region) is fetched again and swapped in, at most once
// a second; focus stays where it was. Without this script every page still works (it just doesn't move).
"use strict";
// A form that acts on many jobs asks first (data-confirm); the server needs no such step.
document.addEventListener("submit", function (event) {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
(function () {
  const body = document.body;
  if (!body.dataset.live) return;
  const filter = JSON.parse(body.dataset.live);
  const state = document.getElementById("live-state");
  const params = new URLSearchParams();
  if (filter.job_id) params.append("job_id", filter.job_id);
  if (filter.org_id) params.append("org_id", filter.org_id);
  const url = "/api/events" + (params.toString() ? "?" + params : "");
  let timer = null, inFlight = false, again = false, last = 0;
  const source = new EventSource(url);

  function show(text, on) {
    if (!state) return;
    state.textContent = text;
    state.classList.toggle("on", on);
  }

  async function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    last = Date.now();
    try {
      const response = await fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.redirected && new URL(response.url).pathname === "/login") {
        show("logged out: reload to log in", false);
        source.close();
        return;
      }
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("live-region");
      const current = document.getElementById("live-region");
      if (!fresh || !current) return;
      const focused = document.activeElement && document.activeElement.id;
      current.replaceWith(document.adoptNode(fresh));
      if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
      body.dispatchEvent(new CustomEvent("qualgent:updated"));
    } catch (err) {
      // The next event retries.
    } finally {
      inFlight = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule() {
    if (timer) return;
    const wait = Math.max(0, 1000 - (Date.now() - last));
    timer = setTimeout(function () { timer = null; refresh(); }, wait);
  }

  source.addEventListener("open", function () { show("live", true); });
  source.addEventListener("error", function () {
    // The browser reconnects by itself, unless the server refused the stream (a session that ended).
    show(source.readyState === EventSource.CLOSED ? "disconnected: reload the page" : "reconnecting…", false);
  });
  source.addEventListener("job", schedule);
  source.addEventListener("resync", schedule);
  window.addEventListener("pagehide", function () { source.close(); });
})();
