// spasm-cds timeline: a SMART App Launch 2.0 EHR launch as a public client (PKCE S256), then the patient's results
// of the charted labs and the start dates of the charted medications, read from the EHR's FHIR server and drawn as
// an SVG timeline with a data table. What to chart comes from the card's appContext (codes from mappings/).
// No build step and nothing loaded from elsewhere; every text goes in through textContent, never as markup.
"use strict";

const SCOPE = "launch patient/Patient.rs patient/Observation.rs patient/MedicationRequest.rs";
const MAX_PAGES = 10;  // per query: Bundle next links followed at most this often
const CODES_PER_QUERY = 80;  // medication codes per search, so that a request line stays short
const SVG = "http://www.w3.org/2000/svg";
const STORE_PREFIX = "spasm-cds-timeline:";
const WIDTH = 960, PANEL = 190, TOP = 34, LEFT = 70, RIGHT = 24, GAP = 26;

const app = document.getElementById("app");

function say(text) { document.getElementById("status").textContent = text; }

function fail(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
  say("The timeline could not be drawn.");
}

function base64url(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(size) { return base64url(crypto.getRandomValues(new Uint8Array(size))); }

async function send(url, options, what) {
  try {
    return await fetch(url, options);
  } catch (e) {  // network down, refused, or blocked by CORS: fetch says only "failed to fetch"
    throw new Error(`${what} could not be reached (${new URL(url).origin}).`);
  }
}

async function readJson(response, what) {
  try {
    return await response.json();
  } catch (e) {
    throw new Error(`${what}: the answer is not JSON (HTTP ${response.status})`);
  }
}

async function startLaunch(iss, launch) {
  say("Reading the EHR's SMART configuration…");
  const base = iss.replace(/\/+$/, "");
  const response = await send(`${base}/.well-known/smart-configuration`, {headers: {Accept: "application/json"}},
                               `The SMART configuration of ${base}`);
  if (!response.ok) {
    throw new Error(`The FHIR server ${base} has no SMART configuration (HTTP ${response.status}); ` +
                    "it cannot launch SMART apps.");
  }
  const config = await readJson(response, "SMART configuration");
  if (!config.authorization_endpoint || !config.token_endpoint) {
    throw new Error("The SMART configuration names no authorization or token endpoint.");
  }
  const capabilities = Array.isArray(config.capabilities) ? config.capabilities : [];
  if (!capabilities.includes("launch-ehr")) {
    throw new Error(`The FHIR server ${base} does not offer the SMART EHR launch (no launch-ehr capability).`);
  }
  if (!(config.code_challenge_methods_supported || []).includes("S256")) {
    throw new Error(`The FHIR server ${base} does not support PKCE with S256, which this app requires.`);
  }
  const verifier = randomText(32);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const state = randomText(16);
  sessionStorage.setItem(STORE_PREFIX + state, JSON.stringify({verifier, iss: base, token: config.token_endpoint}));
  const query = new URLSearchParams({
    response_type: "code", client_id: app.dataset.clientId, redirect_uri: app.dataset.redirectUri,
    scope: SCOPE, state, aud: base, launch, code_challenge: challenge, code_challenge_method: "S256"});
  say("Asking the EHR for access…");
  location.assign(`${config.authorization_endpoint}?${query}`);
}

async function finishLaunch(code, state) {
  const saved = sessionStorage.getItem(STORE_PREFIX + state);
  if (!saved) throw new Error("This page was not opened by a launch of this app (unknown state); launch it again.");
  sessionStorage.removeItem(STORE_PREFIX + state);
  const launch = JSON.parse(saved);
  history.replaceState(null, "", location.pathname);  // the code is spent: keep it out of the address bar
  say("Getting the access token…");
  const response = await send(launch.token, {
    method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded", Accept: "application/json"},
    body: new URLSearchParams({grant_type: "authorization_code", code, redirect_uri: app.dataset.redirectUri,
                               client_id: app.dataset.clientId, code_verifier: launch.verifier})},
    "The EHR's token endpoint");
  const answer = await readJson(response, "token response");
  if (!response.ok || !answer.access_token) {
    throw new Error(`The EHR refused the token request: ${answer.error_description || answer.error || response.status}`);
  }
  if (!answer.patient) throw new Error("The launch carried no patient.");
  if (!answer.appContext) throw new Error("The launch carried no appContext: open the app from a card's link.");
  let context;
  try {
    context = typeof answer.appContext === "string" ? JSON.parse(answer.appContext) : answer.appContext;
  } catch (e) {
    throw new Error("The card's appContext is not JSON.");
  }
  await draw(launch.iss, answer.access_token, answer.patient, context);
}

async function search(iss, token, url) {
  const found = [];
  let next = url;
  for (let page = 0; next && page < MAX_PAGES; page++) {
    const response = await send(next, {headers: {Authorization: `Bearer ${token}`, Accept: "application/fhir+json"}},
                                "The FHIR server");
    if (response.status === 401 || response.status === 403) {
      throw new Error(`The FHIR server refused the access token (HTTP ${response.status}).`);
    }
    if (!response.ok) {
      let detail = "";
      try {
        const outcome = await response.json();
        detail = ((outcome.issue || [])[0] || {}).diagnostics || "";
      } catch (e) { /* no OperationOutcome to quote */ }
      throw new Error(`The FHIR server answered HTTP ${response.status}${detail ? `: ${detail}` : ""}.`);
    }
    const bundle = await readJson(response, "FHIR search");
    for (const entry of bundle.entry || []) if (entry.resource) found.push(entry.resource);
    const link = (bundle.link || []).find(l => l.relation === "next");
    next = link && typeof link.url === "string" && link.url.startsWith(iss + "/") ? link.url : null;
  }
  return found;
}

function codings(concept) { return (concept && Array.isArray(concept.coding)) ? concept.coding : []; }

function chunks(list, size) {
  const out = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

function startOf(request) {
  const dates = [request.authoredOn];
  for (const dosage of request.dosageInstruction || []) {
    dates.push((((dosage.timing || {}).repeat || {}).boundsPeriod || {}).start);
  }
  dates.push(((request.dispenseRequest || {}).validityPeriod || {}).start);
  const valid = dates.filter(d => typeof d === "string" && !isNaN(Date.parse(d))).sort();
  return valid.length ? valid[0] : null;
}

function medicationName(request, fallback) {
  const concept = request.medicationCodeableConcept || {};
  return concept.text || (codings(concept).find(c => c.display) || {}).display || fallback;
}

function sameUnit(a, b) { return typeof a === "string" && typeof b === "string" && a.toLowerCase() === b.toLowerCase(); }

// A result's own reference range in this unit: the first referenceRange whose low and/or high are numbers in it
// (matched by UCUM code or by unit text), as {low, high} with either left out; null when it has none.
function ownRange(obs, unit) {
  const bound = q => (q && typeof q.value === "number" && (sameUnit(q.code, unit) || sameUnit(q.unit, unit)))
    ? q.value : undefined;
  for (const range of Array.isArray(obs.referenceRange) ? obs.referenceRange : []) {
    if (!range || typeof range !== "object") continue;
    const low = bound(range.low), high = bound(range.high);
    if (low !== undefined || high !== undefined) return {low, high};
  }
  return null;
}

// The band of a lab's panel: the own range of its most recent charted result that has one, else the fallback
// range of the appContext (from mappings/).
function bandOf(lab, mine) {
  const latest = mine.filter(r => r.range).pop();
  if (latest) return {...latest.range, source: "laboratory", date: day(latest.date)};
  return {low: typeof lab.low === "number" ? lab.low : undefined,
          high: typeof lab.high === "number" ? lab.high : undefined, source: "fallback"};
}

function outsideOf(value, range) {
  return (range.low !== undefined && value < range.low) || (range.high !== undefined && value > range.high);
}

function rangeText(range) {
  if (!range) return "—";
  if (range.low !== undefined && range.high !== undefined) return `${range.low}–${range.high}`;
  return range.low !== undefined ? `≥ ${range.low}` : `≤ ${range.high}`;
}

async function draw(iss, token, patient, context) {
  const labs = Array.isArray(context.labs) ? context.labs : [];
  const medications = Array.isArray(context.medications) ? context.medications : [];
  const systems = context.systems || {};
  if (context.title) document.getElementById("chart-title").textContent = context.title;
  const who = encodeURIComponent(patient);
  say("Reading results and medication orders…");
  const results = [];
  for (const lab of labs) {
    const codes = new Set(lab.loinc || []);
    const query = [...codes].map(c => `${systems.loinc}|${c}`).join(",");
    const found = await search(iss, token, `${iss}/Observation?patient=${who}&code=${encodeURIComponent(query)}&_count=100`);
    for (const obs of found) {
      const coded = codings(obs.code).some(c => c.system === systems.loinc && codes.has(c.code));
      const quantity = obs.valueQuantity || {};
      const when = obs.effectiveDateTime || (obs.effectivePeriod || {}).start || obs.issued;
      if (!coded || typeof quantity.value !== "number" || !when || isNaN(Date.parse(when))) continue;
      if (results.some(r => r.id === obs.id && r.lab === lab)) continue;
      const unit = quantity.code || quantity.unit || "";
      const charted = sameUnit(unit, lab.unit);
      results.push({id: obs.id, lab, date: when, value: quantity.value, unit: quantity.unit || unit, charted,
                    range: ownRange(obs, charted ? lab.unit : unit)});
    }
  }
  const starts = [];
  for (const group of medications) {
    const codes = new Set(group.rxnorm || []);
    for (const part of chunks([...codes], CODES_PER_QUERY)) {
      const found = await search(iss, token,
        `${iss}/MedicationRequest?patient=${who}&code=${encodeURIComponent(part.join(","))}&_count=100`);
      for (const request of found) {
        const coded = codings(request.medicationCodeableConcept).some(c => c.system === systems.rxnorm && codes.has(c.code));
        const date = startOf(request);
        if (!coded || !date || starts.some(s => s.id === request.id)) continue;
        starts.push({id: request.id, group, date, name: medicationName(request, group.label)});
      }
    }
  }
  results.sort((a, b) => Date.parse(a.date) - Date.parse(b.date));
  starts.sort((a, b) => Date.parse(a.date) - Date.parse(b.date));
  drawChart(labs, results, starts);
  fillTables(results, starts);
  const plotted = results.filter(r => r.charted).length;
  say(`Chart drawn: ${plotted} result${plotted === 1 ? "" : "s"} and ${starts.length} medication ` +
      `start${starts.length === 1 ? "" : "s"} from the FHIR server.`);
}

function node(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function day(date) { return String(date).slice(0, 10); }

function drawChart(labs, results, starts) {
  const holder = document.getElementById("chart");
  holder.replaceChildren();
  const times = [...results.filter(r => r.charted).map(r => Date.parse(r.date)), ...starts.map(s => Date.parse(s.date))];
  if (!times.length) {
    const empty = document.createElement("p");
    empty.textContent = "No results of these tests and no start of these medications were found for this patient.";
    holder.append(empty);
    return;
  }
  const DAY = 86400000;
  let first = Math.min(...times), last = Math.max(...times);
  const pad = Math.max((last - first) * 0.05, 7 * DAY);
  first -= pad; last += pad;
  const height = TOP + labs.length * (PANEL + GAP);
  const svg = node("svg", {viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-labelledby": "chart-summary"});
  svg.append(node("title", {id: "chart-summary"},
    `${labs.map(l => l.label).join(", ")} over time, with ${starts.length} medication start${starts.length === 1 ? "" : "s"}`));
  const x = t => LEFT + (t - first) / (last - first) * (WIDTH - LEFT - RIGHT);
  labs.forEach((lab, index) => {
    const top = TOP + index * (PANEL + GAP);
    const bottom = top + PANEL - 24;
    const mine = results.filter(r => r.lab === lab && r.charted);
    const panel = node("g", {class: "panel", "data-lab": lab.id});
    panel.append(node("text", {class: "panel-title", x: LEFT, y: top - 8},
      `${lab.label} (${lab.unit})${mine.length ? "" : ": no results"}`));
    const band = bandOf(lab, mine);
    panel.append(node("text", {class: "range-caption", x: WIDTH - RIGHT, y: top - 8, "text-anchor": "end",
                               "data-source": band.source},
      band.source === "laboratory" ? `range: the laboratory's, from ${band.date}`
        : "range: typical adult range (no laboratory range on the results)"));
    const values = mine.map(r => r.value);
    for (const bound of [band.low, band.high]) if (bound !== undefined) values.push(bound);
    let low = values.length ? Math.min(...values) : 0, high = values.length ? Math.max(...values) : 1;
    const room = Math.max((high - low) * 0.15, Math.abs(high) * 0.05, 0.1);
    low -= room; high += room;
    const y = v => bottom - (v - low) / (high - low) * (bottom - top);
    if (band.low !== undefined || band.high !== undefined) {
      const upper = band.high !== undefined ? y(band.high) : top;
      const lower = band.low !== undefined ? y(band.low) : bottom;
      const rect = node("rect", {class: "band", x: LEFT, y: upper, width: WIDTH - LEFT - RIGHT, height: lower - upper,
                                 "data-source": band.source});
      if (band.low !== undefined) rect.setAttribute("data-low", String(band.low));
      if (band.high !== undefined) rect.setAttribute("data-high", String(band.high));
      panel.append(rect);
      for (const bound of [band.low, band.high]) {
        if (bound === undefined) continue;
        panel.append(node("line", {class: "band-edge", x1: LEFT, x2: WIDTH - RIGHT, y1: y(bound), y2: y(bound)}));
        panel.append(node("text", {class: "tick", x: LEFT - 6, y: y(bound) + 4, "text-anchor": "end"}, String(bound)));
      }
    }
    panel.append(node("line", {class: "axis-line", x1: LEFT, x2: LEFT, y1: top, y2: bottom}));
    panel.append(node("line", {class: "axis-line", x1: LEFT, x2: WIDTH - RIGHT, y1: bottom, y2: bottom}));
    for (let i = 0; i <= 4; i++) {
      const t = first + (last - first) * i / 4;
      const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
      panel.append(node("text", {class: "tick", x: x(t), y: bottom + 16, "text-anchor": anchor},
        new Date(t).toISOString().slice(0, 10)));
    }
    if (mine.length > 1) {
      panel.append(node("polyline", {class: "trend",
        points: mine.map(r => `${x(Date.parse(r.date)).toFixed(1)},${y(r.value).toFixed(1)}`).join(" ")}));
    }
    for (const r of mine) {
      const outside = outsideOf(r.value, r.range || band);  // its own range when it has one, else the band
      const point = node("circle", {class: outside ? "point outside" : "point", cx: x(Date.parse(r.date)).toFixed(1),
                                    cy: y(r.value).toFixed(1), r: 5, "data-value": r.value, "data-date": day(r.date)});
      point.append(node("title", {}, `${lab.label} ${r.value} ${r.unit} on ${day(r.date)}`));
      panel.append(point);
    }
    svg.append(panel);
  });
  const markers = node("g", {class: "medication-starts"});
  for (const start of starts) {
    const at = x(Date.parse(start.date));
    const line = node("line", {class: "med-start", x1: at, x2: at, y1: TOP - 26, y2: height - GAP,
                               "data-medication": start.group.id, "data-date": day(start.date)});
    line.append(node("title", {}, `${start.name} started ${day(start.date)}`));
    markers.append(line);
    markers.append(node("text", {class: "med-label", x: at + 4, y: 14}, `${start.name} · ${day(start.date)}`));
  }
  svg.append(markers);
  holder.append(svg);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell;
    tr.append(td);
  }
  return tr;
}

function fillTables(results, starts) {
  document.querySelector("#results-table tbody").replaceChildren(
    ...results.map(r => row([r.lab.label, day(r.date), String(r.value), r.unit, rangeText(r.range),
                          r.charted ? "yes" : "no (other unit)"])));
  document.querySelector("#medications-table tbody").replaceChildren(
    ...starts.map(s => row([s.name, s.group.label, day(s.date)])));
  document.getElementById("tables").hidden = false;
}

async function main() {
  const params = new URLSearchParams(location.search);
  if (params.get("error")) {
    throw new Error(`The EHR did not authorize the app: ${params.get("error_description") || params.get("error")}`);
  }
  if (params.get("iss") && params.get("launch")) return startLaunch(params.get("iss"), params.get("launch"));
  if (params.get("code") && params.get("state")) return finishLaunch(params.get("code"), params.get("state"));
  throw new Error("Open this app from a card's link in the EHR: it needs the launch parameters iss and launch.");
}

main().catch(error => fail(error && error.message ? error.message : String(error)));
