// dependable-bench leaderboard page: sort, search, facets, columns, details, downloads and a
// permalink over the suite's JSON document, embedded in the page (a file:// page may not
// fetch). Every string from the data is written with textContent, never as HTML.
"use strict";

(function () {
  const doc = JSON.parse(document.getElementById("bench-data").textContent);
  const KINDS = ["dataset", "model", "debiaser", "explainer"];
  const FACETS = ["dataset", "model", "debiaser", "explainer", "evaluator"];
  const ARROW = { higher: "↑", lower: "↓", neither: "" };
  const metricInfo = Object.fromEntries(doc.metrics.map((m) => [m.column, m]));
  const datasetOrder = Object.fromEntries(doc.datasets.map((d, i) => [d.name, i]));
  const boardPosition = Object.fromEntries(doc.rows.map((r, i) => [r.id, i])); // rows come in board order
  const kinds = KINDS.filter((k) => doc.rows.some((r) => r[k]));
  const allColumns = [];
  for (const d of doc.datasets) for (const c of d.columns) if (!allColumns.includes(c)) allColumns.push(c);
  for (const m of doc.metrics) if (!allColumns.includes(m.column)) allColumns.push(m.column);

  const state = { q: "", facets: {}, sort: "rank", dir: "asc", hidden: new Set(), open: "" };
  let defaultHidden = new Set(allColumns.filter((c) => !doc.datasets.some((d) => d.columns.includes(c))));

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  // ---- state <-> URL (the permalink) -------------------------------------------------------
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    state.q = params.get("q") || "";
    state.facets = {};
    for (const f of FACETS) if (params.get(f)) state.facets[f] = params.get(f);
    const sort = params.get("sort");
    if (sort) {
      const at = sort.lastIndexOf(":");
      state.sort = sort.slice(0, at);
      state.dir = sort.slice(at + 1) === "desc" ? "desc" : "asc";
    }
    state.hidden = params.has("hide")
      ? new Set(params.get("hide").split(",").filter(Boolean))
      : new Set(defaultHidden);
    state.open = params.get("row") || "";
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (state.q) params.set("q", state.q);
    for (const f of FACETS) if (state.facets[f]) params.set(f, state.facets[f]);
    params.set("sort", `${state.sort}:${state.dir}`);
    params.set("hide", [...state.hidden].join(","));
    if (state.open) params.set("row", state.open);
    const hash = "#" + params.toString();
    try { history.replaceState(null, "", hash); } catch (e) { location.hash = hash; }
    document.getElementById("permalink").href = location.href;
  }

  // ---- which rows and columns ---------------------------------------------------------------
  function visibleColumns() {
    let cols = allColumns;
    const ds = state.facets.dataset;
    if (ds) {
      const entry = doc.datasets.find((d) => d.name === ds);
      const present = new Set(doc.rows.filter((r) => r.dataset === ds).flatMap((r) => Object.keys(r.cells)));
      cols = cols.filter((c) => present.has(c) || (entry && entry.columns.includes(c)));
    }
    if (state.facets.evaluator) cols = cols.filter((c) => metricInfo[c] && metricInfo[c].evaluator === state.facets.evaluator);
    return cols.filter((c) => !state.hidden.has(c));
  }

  function rowEvaluators(row) {
    return [...new Set(Object.keys(row.cells).map((c) => (metricInfo[c] || {}).evaluator))];
  }

  function visibleRows() {
    const q = state.q.trim().toLowerCase();
    const rows = doc.rows.filter((row) => {
      for (const f of FACETS) {
        const want = state.facets[f];
        if (!want) continue;
        if (f === "evaluator" ? !rowEvaluators(row).includes(want) : (row[f] || "") !== want) return false;
      }
      if (!q) return true;
      return kinds.map((k) => row[k] || "").join(" ").toLowerCase().includes(q);
    });
    return rows.sort(compare);
  }

  function sortValue(row, col) {
    if (col === "rank") return row.rank;
    if (KINDS.includes(col)) return row[col] || "";
    const cell = row.cells[col];
    return cell && cell.mean !== null ? cell.mean : null;
  }

  function compare(a, b) {
    const col = state.sort;
    // the published order: dataset, rank, then the primary metric's mean, best first
    const byBoard = (datasetOrder[a.dataset] - datasetOrder[b.dataset]) ||
      ((a.rank === null) - (b.rank === null)) || ((a.rank || 0) - (b.rank || 0)) ||
      (boardPosition[a.id] - boardPosition[b.id]);
    if (col === "rank") {
      // ranks restart in every dataset: keep the datasets apart, then order by rank
      const d = datasetOrder[a.dataset] - datasetOrder[b.dataset];
      if (d) return d;
      const va = a.rank, vb = b.rank;
      if (va === null || vb === null) return (va === null) - (vb === null) || byBoard;
      return (state.dir === "asc" ? va - vb : vb - va) || byBoard;
    }
    const va = sortValue(a, col), vb = sortValue(b, col);
    if (va === null || vb === null) return (va === null) - (vb === null) || byBoard; // no value: last
    let d = typeof va === "string" ? va.localeCompare(vb) : va - vb;
    if (state.dir === "desc") d = -d;
    return d || byBoard;
  }

  function bestFirst(col) {
    const info = metricInfo[col];
    return info && info.direction === "lower" ? "asc" : "desc";
  }

  // ---- rendering ----------------------------------------------------------------------------
  function rankText(row) {
    if (row.rank === null) return "–";
    return row.tied ? `=${row.rank}` : String(row.rank);
  }

  function cellNode(row, col) {
    const cell = row.cells[col];
    const td = el("td", { class: "num", "data-col": col });
    if (!cell) { td.textContent = "—"; return td; }
    const suffix = cell.badges.join(" ");
    const value = cell.badges.length ? cell.text.slice(0, cell.text.length - suffix.length).trim() : cell.text;
    if (value) td.append(value);
    for (const badge of cell.badges) {
      if (td.childNodes.length) td.append(" ");
      td.append(el("span", { class: "badge " + (badge.startsWith("FAILED") ? "failed" : "missing"), text: badge }));
    }
    return td;
  }

  function header(cols) {
    const tr = el("tr");
    for (const id of ["rank", ...kinds]) {
      tr.append(el("th", { class: "frozen", "data-col": id, scope: "col" }, sortButton(id, id)));
    }
    for (const col of cols) {
      const info = metricInfo[col] || { label: col, direction: "higher" };
      const th = el("th", { "data-col": col, scope: "col", title: info.description || col });
      th.append(sortButton(col, info.label), el("span", { class: "dir", text: ARROW[info.direction] || "" }));
      tr.append(th);
    }
    return tr;
  }

  function sortButton(col, label) {
    const active = state.sort === col;
    const button = el("button", { type: "button", text: label, onclick: () => {
      if (state.sort === col) state.dir = state.dir === "asc" ? "desc" : "asc";
      else { state.sort = col; state.dir = col === "rank" || KINDS.includes(col) ? "asc" : bestFirst(col); }
      update();
    } });
    if (active) button.classList.add("active");
    return button;
  }

  function detailsRow(row, span) {
    const box = el("td", { colspan: String(span) });
    box.append(el("p", {}, "Reproduce this row: ", el("code", { class: "command", text: row.command })));
    const comps = el("table", {}, el("tr", {}, el("th", { text: "component" }), el("th", { text: "name" }),
      el("th", { text: "version" }), el("th", { text: "parameters" })));
    for (const [kind, c] of Object.entries(row.components)) {
      comps.append(el("tr", {}, el("td", { text: kind }), el("td", { text: c.name }), el("td", { text: c.version }),
        el("td", {}, el("code", { text: JSON.stringify(c.params) }))));
    }
    box.append(comps);
    const jobs = el("table", { class: "jobs" }, el("tr", {}, ...["evaluator", "seed", "status", "values", "duration (s)",
      "device", "threads", "job key", "error"].map((t) => el("th", { text: t }))));
    for (const j of row.jobs) {
      const values = Object.entries(j.values).map(([m, v]) => `${m}=${Number(v).toPrecision(6)}`).join(", ");
      jobs.append(el("tr", { class: "job " + j.status }, el("td", { text: j.evaluator }), el("td", { text: String(j.seed) }),
        el("td", {}, el("span", { class: j.status === "ok" ? "" : "badge " + j.status, text: j.status })),
        el("td", { text: values }), el("td", { text: j.duration_s === null ? "" : j.duration_s.toFixed(1) }),
        el("td", { text: j.device || "" }), el("td", { text: j.threads === null ? "" : String(j.threads) }),
        el("td", {}, el("code", { text: j.job_key })), el("td", { class: "error", text: j.error || "" })));
    }
    box.append(jobs);
    return el("tr", { class: "details", "data-row": row.id }, box);
  }

  function renderTable() {
    const cols = visibleColumns();
    const rows = visibleRows();
    const table = document.getElementById("board");
    table.replaceChildren();
    table.append(el("thead", {}, header(cols)));
    const body = el("tbody");
    for (const row of rows) {
      const tr = el("tr", { class: "row" + (state.open === row.id ? " open" : ""), "data-row": row.id, tabindex: "0" });
      const rank = el("td", { class: "frozen rank", "data-col": "rank", text: rankText(row) });
      if (row.tied) { rank.classList.add("tie"); rank.title = "tied: its 95 % interval overlaps the better rows'"; }
      tr.append(rank);
      for (const k of kinds) tr.append(el("td", { class: "frozen", "data-col": k, text: row[k] || "" }));
      for (const col of cols) tr.append(cellNode(row, col));
      const toggle = () => { state.open = state.open === row.id ? "" : row.id; update(); };
      tr.addEventListener("click", toggle);
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") toggle(); });
      body.append(tr);
      if (state.open === row.id) body.append(detailsRow(row, 1 + kinds.length + cols.length));
    }
    table.append(body);
    // freeze the identity columns at their measured widths
    const firstRow = table.querySelector("thead tr");
    let left = 0;
    for (const th of firstRow.querySelectorAll("th.frozen")) {
      const col = th.dataset.col;
      for (const cell of table.querySelectorAll(`[data-col="${col}"].frozen`)) cell.style.left = left + "px";
      left += th.getBoundingClientRect().width;
    }
    for (const th of firstRow.querySelectorAll("th")) {
      if (th.dataset.col === state.sort) th.setAttribute("aria-sort", state.dir === "asc" ? "ascending" : "descending");
    }
    document.getElementById("count").textContent = `${rows.length} of ${doc.rows.length} rows`;
    return { cols, rows };
  }

  // ---- downloads ------------------------------------------------------------------------------
  function csvField(value, text) {
    let s = value === null || value === undefined ? "" : String(value);
    if (text && /^[=+\-@\t\r]/.test(s)) s = "'" + s; // no formula injection from a label
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function currentCsv() {
    const cols = visibleColumns();
    const rows = visibleRows();
    const head = ["rank", ...kinds];
    for (const c of cols) head.push(c, `${c} mean`, `${c} std`, `${c} ci_low`, `${c} ci_high`, `${c} n`);
    const lines = [head.map((h) => csvField(h, true)).join(",")];
    for (const row of rows) {
      const out = [csvField(rankText(row)), ...kinds.map((k) => csvField(row[k] || "", true))];
      for (const c of cols) {
        const cell = row.cells[c];
        if (!cell) { out.push("—", "", "", "", "", ""); continue; }
        out.push(csvField(cell.text), ...["mean", "std", "ci_low", "ci_high", "n"].map((k) => csvField(cell[k])));
      }
      lines.push(out.join(","));
    }
    return lines.join("\n") + "\n";
  }

  function currentJson() {
    const cols = visibleColumns();
    const rows = visibleRows().map((r) => ({ ...r, cells: Object.fromEntries(cols.filter((c) => r.cells[c]).map((c) => [c, r.cells[c]])) }));
    return JSON.stringify({ schema_id: doc.schema_id, schema_version: doc.schema_version, suite: doc.suite,
      view: location.hash, columns: cols, rows, provenance: doc.provenance }, null, 1);
  }

  function download(name, type, text) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---- controls -------------------------------------------------------------------------------
  function buildControls() {
    const box = document.getElementById("controls");
    const search = el("input", { type: "search", id: "search", placeholder: "model, debiaser, explainer…" });
    search.value = state.q;
    search.addEventListener("input", () => { state.q = search.value; update(); });
    box.append(el("label", {}, "Search", search));
    for (const f of FACETS) {
      const values = f === "evaluator"
        ? [...new Set(doc.metrics.map((m) => m.evaluator))]
        : [...new Set(doc.rows.map((r) => r[f]).filter(Boolean))];
      if (values.length < 1 || (f === "explainer" && !kinds.includes("explainer"))) continue;
      const select = el("select", { id: `facet-${f}`, "data-facet": f }, el("option", { value: "", text: "(all)" }));
      for (const v of values) select.append(el("option", { value: v, text: v }));
      select.value = state.facets[f] || "";
      select.addEventListener("change", () => { state.facets[f] = select.value; update(); });
      box.append(el("label", {}, f, select));
    }
    const chooser = el("details", { class: "columns", id: "columns" }, el("summary", { text: "Columns" }));
    const list = el("div");
    list.append(el("p", { class: "note", text: "rank and the component columns always show" }));
    for (const c of allColumns) {
      const box2 = el("input", { type: "checkbox", "data-col": c });
      box2.checked = !state.hidden.has(c);
      box2.addEventListener("change", () => { if (box2.checked) state.hidden.delete(c); else state.hidden.add(c); update(); });
      list.append(el("label", {}, box2, (metricInfo[c] || { label: c }).label));
    }
    chooser.append(list);
    box.append(chooser);
    box.append(el("button", { type: "button", id: "download-csv", text: "Download CSV",
      onclick: () => download(`${doc.suite}-view.csv`, "text/csv", currentCsv()) }));
    box.append(el("button", { type: "button", id: "download-json", text: "Download JSON",
      onclick: () => download(`${doc.suite}-view.json`, "application/json", currentJson()) }));
    box.append(el("a", { id: "permalink", href: location.href, text: "Permalink to this view" }));
    box.append(el("button", { type: "button", id: "reset", text: "Reset view", onclick: () => {
      state.q = ""; state.facets = {}; state.sort = "rank"; state.dir = "asc"; state.hidden = new Set(defaultHidden); state.open = "";
      document.getElementById("controls").replaceChildren(); buildControls(); update();
    } }));
  }

  function update() {
    renderTable();
    writeHash();
  }

  readHash();
  buildControls();
  update();
  window.benchSite = { doc, currentCsv, currentJson, state };
})();
