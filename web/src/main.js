// Tingjian live dashboard: hash-routed views over the /v1/stream push feed and the query API.

import * as echarts from 'echarts/core';
import { format } from 'echarts/core';
import { BarChart, HeatmapChart, LineChart } from 'echarts/charts';
import {
  GridComponent, LegendComponent, TooltipComponent, VisualMapComponent,
} from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

import { alertLinks, drillLink, openDrill, renderFeedback } from './drill.js';
import { effortFigures, effortPanel } from './effort.js';
import { renderEmerging } from './emerging.js';
import { explainPanel } from './explain.js';
import { renderJourney } from './journey.js';
import { drawQuadrant, quadrantTitle } from './quadrant.js';
import { renderDimensions } from './dimensions.js';
import { renderAgents } from './agents.js';
import { callbackKpis, customerLink, renderCustomer } from './customer.js';
import { currentLang, formatTime, setLang, setMetricLabels, t } from './i18n.js';
import {
  LIVE_WINDOWS, LiveState, gapBand, setCatalogue, windowLabel,
} from './live.js';

echarts.use([BarChart, HeatmapChart, LineChart, GridComponent, LegendComponent,
  TooltipComponent, VisualMapComponent, CanvasRenderer]);

const live = new LiveState();
// Who is signed in (from /auth/session): shown in the header; case buttons need `operator`.
let session = null;
const CSRF = { 'X-Tingjian-CSRF': '1' };
// Topic id -> display name (e.g. logistics_delivery -> 物流/配送), from GET /v1/taxonomy.
const topicNames = new Map();
const topicName = (id) => topicNames.get(id) ?? id;
const charts = new Map();
let teardown = () => {};

// ---------- small DOM helpers (text always goes through textContent: feedback is user input)

// ECharts puts a tooltip formatter's string into innerHTML: every value that reaches one goes
// through this first, since touchpoint, topic and stage names come from the data.
const esc = (value) => format.encodeHTML(String(value ?? ''));

// Axis tooltips: the category (a time or a topic name) and each series' name and value.
function axisTip(params) {
  const list = Array.isArray(params) ? params : [params];
  if (!list.length) return '';
  const rows = list.map((p) => `${esc(p.seriesName)}: ${esc(p.value ?? '–')}`);
  return [esc(list[0].name), ...rows].join('<br>');
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const fmt = {
  num: (v, digits = 2) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits)),
  pct: (v) => (v === null || v === undefined ? '–' : `${(100 * v).toFixed(1)}%`),
  int: (v) => (v === null || v === undefined ? '–' : Math.round(v).toLocaleString()),
  signed: (v, digits = 2) => (v === null || v === undefined ? '–'
    : `${v >= 0 ? '+' : ''}${Number(v).toFixed(digits)}`),
};

// Charts are pictures to a screen reader: each gets a role and a name.
function chart(el, label) {
  el.setAttribute('role', 'img');
  el.setAttribute('aria-label', label);
  const instance = echarts.init(el, null, { renderer: 'canvas' });
  charts.set(el, instance);
  return instance;
}

function disposeCharts() {
  for (const instance of charts.values()) instance.dispose();
  charts.clear();
}

window.addEventListener('resize', () => { for (const c of charts.values()) c.resize(); });

async function getJson(path) {
  const response = await fetch(path, { headers: { accept: 'application/json' } });
  if (response.status === 401) signedOut();
  if (!response.ok) {
    const error = new Error(`${response.status} ${path}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// ---------- push feed

let source = null;
function connect() {
  const status = document.getElementById('conn');
  status.dataset.state = 'connecting';
  status.textContent = t('connecting');
  source = new EventSource('/v1/stream');
  source.addEventListener('snapshot', (e) => {
    status.dataset.state = 'live';
    status.textContent = t('live');
    live.reset(JSON.parse(e.data));
  });
  source.addEventListener('scores', (e) => live.applyScores(JSON.parse(e.data).rows));
  source.addEventListener('alerts', (e) => live.applyAlerts(JSON.parse(e.data).rows));
  source.addEventListener('cases', (e) => live.applyCases(JSON.parse(e.data).rows));
  source.addEventListener('resync', () => { source.close(); connect(); });
  source.onerror = () => {
    status.dataset.state = 'offline';
    status.textContent = t('offline');
    // A stream refused for an ended session keeps failing: ask who we are, and sign in again.
    fetch('/auth/session').then((r) => { if (r.status === 401) signedOut(); }).catch(() => {});
  };
}

// ---------- sparkline (inline SVG: dozens of tiles should not each hold a chart instance)

function sparkline(rows) {
  const points = rows.filter((r) => r.volume > 0).map((r) => 5 * (r.mean_sentiment + 1));
  const width = 160; const height = 36;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('aria-hidden', 'true');
  if (points.length < 2) return svg;
  const step = width / (points.length - 1);
  const coords = points.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / 10) * height).toFixed(1)}`);
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', coords.join(' '));
  svg.append(line);
  return svg;
}

// ---------- Overview

function alertBanner() {
  const firing = live.firingAlerts();
  const box = h('section', { class: 'alerts-banner', 'aria-live': 'polite', id: 'firing' },
    h('h2', {}, t('firing_alerts'), ' ', h('span', { class: 'count' }, firing.length)));
  if (!firing.length) {
    box.append(h('p', { class: 'muted' }, t('no_firing')));
    return box;
  }
  box.append(h('ul', {}, firing.slice(0, 6).map((a) => h('li', {
    class: `alert sev-${a.severity}`, 'data-alert-id': a.alert_id,
  }, h('strong', {}, t(`sev_${a.severity}`)), ' ',
  h('a', { href: `#/touchpoint/${encodeURIComponent(a.touchpoint)}` }, a.touchpoint), ' · ',
  a.message || a.rule_id, ' · ', formatTime(a.fired_at)))));
  return box;
}

function tile(touchpoint) {
  const s = live.summary(touchpoint);
  const band = gapBand(s.gap);
  const firing = live.firingAlerts().some((a) => a.touchpoint === touchpoint);
  const figures = [
    [t('mean_sentiment'), fmt.num(s.mean_sentiment)],
    [t('negative_share'), fmt.pct(s.negative_share)],
    [t('volume'), fmt.int(s.volume)],
  ];
  if (s.nps !== null) figures.push([t('nps'), fmt.num(s.nps, 0)]);
  if (s.csat !== null) figures.push([t('csat'), `${fmt.num(s.csat, 0)}%`]);
  figures.push(...effortFigures(s));
  return h('a', {
    class: `tile gap-${band}${firing ? ' firing' : ''}`,
    href: `#/touchpoint/${encodeURIComponent(touchpoint)}`,
    'data-touchpoint': touchpoint,
    'data-updated': live.updatesByTouchpoint.get(touchpoint) ?? 0,
    'data-volume': s.volume,
    'aria-label': `${touchpoint}: ${t('experience')} ${fmt.num(s.experience, 1)}/10`,
  },
  h('div', { class: 'tile-head' }, h('h3', {}, touchpoint),
    firing ? h('span', { class: 'badge' }, t('status_firing')) : null),
  h('div', { class: 'tile-score' }, h('span', { class: 'big' }, fmt.num(s.experience, 1)),
    h('span', { class: 'unit' }, `${t('experience_unit')} ${t('experience')}`)),
  h('dl', {}, figures.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
  sparkline(live.series(touchpoint)),
  h('p', { class: 'gap' }, s.gap === null ? t('no_target')
    : `${t('gap')} ${fmt.signed(s.gap)} (${t('target')} ${fmt.num(s.target)})`));
}

function renderOverview(view) {
  const grid = h('div', { class: 'tiles', id: 'tiles' });
  const banner = h('div', { id: 'banner-slot' });
  view.append(banner, h('h2', { class: 'section' }, t('nav_overview'),
    h('small', {}, ` · ${t('last_minutes', LIVE_WINDOWS * live.windowSeconds / 60)}`)), grid);
  const draw = (kind, touched) => {
    banner.replaceChildren(alertBanner());
    const names = live.touchpoints();
    if (!names.length) {
      grid.replaceChildren(h('p', { class: 'muted' }, t('no_data')));
      return;
    }
    const existing = new Map([...grid.querySelectorAll('.tile')].map((el) => [el.dataset.touchpoint, el]));
    const focused = document.activeElement?.dataset?.touchpoint;
    const fresh = names.map((name) => (!touched || touched.has(name) || kind === 'alerts'
      || !existing.has(name) ? tile(name) : existing.get(name)));
    grid.replaceChildren(...fresh);
    if (focused) grid.querySelector(`.tile[data-touchpoint="${CSS.escape(focused)}"]`)?.focus();
  };
  draw('snapshot', null);
  return live.onChange(draw);
}

// ---------- Touchpoint detail

// How far back each window's trend reaches; the base window (VOC_WINDOW_SECONDS) gets 2 hours.
const RANGES = { '5m': 12 * 3600, '1h': 7 * 86400, '1d': 90 * 86400 };

function windowChoices() {
  const base = windowLabel(live.windowSeconds);
  return [base, ...Object.keys(RANGES).filter((w) => w !== base)];
}

function apiNote(el, path, error) {
  el.replaceChildren(h('p', { class: 'muted' }, [404, 405].includes(error.status) ? t('api_missing', path)
    : `${path}: ${error.message}`));
}

function highlighted(text, topics) {
  const spans = [];
  for (const topic of topics) {
    for (const [start, end] of topic.evidence ?? []) spans.push({ start, end, topic });
  }
  spans.sort((a, b) => a.start - b.start);
  const chars = [...text];
  const out = [];
  let at = 0;
  for (const span of spans) {
    if (span.start < at) continue;
    out.push(chars.slice(at, span.start).join(''));
    const label = span.topic.sentiment?.label ?? (span.topic.sentiment >= 0.2 ? 'positive'
      : span.topic.sentiment <= -0.2 ? 'negative' : 'neutral');
    out.push(h('mark', { class: `ev-${label}`, title: span.topic.name ?? span.topic.id },
      chars.slice(span.start, span.end).join('')));
    at = span.end;
  }
  out.push(chars.slice(at).join(''));
  return out;
}

function renderDetail(view, touchpoint) {
  const names = live.touchpoints();
  if (!touchpoint && names.length) touchpoint = names[0];
  let win = sessionStorage.getItem('tingjian.window') || windowLabel(live.windowSeconds);
  if (!windowChoices().includes(win)) win = windowLabel(live.windowSeconds);
  const picker = h('select', { id: 'touchpoint-picker', onchange: (e) => {
    location.hash = `#/touchpoint/${encodeURIComponent(e.target.value)}`;
  } }, (names.includes(touchpoint) || !touchpoint ? names : [touchpoint, ...names])
    .map((n) => h('option', { value: n, selected: n === touchpoint }, n)));
  const windows = h('select', { id: 'window-picker', onchange: (e) => {
    win = e.target.value;
    sessionStorage.setItem('tingjian.window', win);
    loadTrends();
  } }, windowChoices().map((w) => h('option', { value: w, selected: w === win }, w)));
  const trendNote = h('div', { id: 'trend-note' });
  const boxes = { sentiment: h('div', { class: 'chart', id: 'trend-sentiment' }),
    nps: h('div', { class: 'chart', id: 'trend-nps' }),
    volume: h('div', { class: 'chart', id: 'trend-volume' }) };
  const topicsBox = h('div', { class: 'chart', id: 'topics-chart' });
  const driversBox = h('div', { id: 'drivers', class: 'scroll' });
  const quadrantBox = h('div', { class: 'chart quadrant', id: 'quadrant-chart' });
  const verbatimBox = h('ul', { class: 'verbatims', id: 'verbatims' });
  const effortBox = h('div', { id: 'effort-slot' });
  const drawEffort = () => effortBox.replaceChildren(effortPanel(touchpoint, live.summary(touchpoint)));
  view.append(
    h('div', { class: 'controls' },
      h('label', { class: 'control' }, `${t('touchpoint')} `, picker),
      h('label', { class: 'control' }, `${t('window')} `, windows)),
    h('h2', { class: 'section' }, touchpoint ?? t('choose_touchpoint')), trendNote, effortBox,
    h('div', { class: 'charts3' },
      h('figure', {}, h('figcaption', {}, t('trend_sentiment')), boxes.sentiment),
      h('figure', {}, h('figcaption', {}, t('trend_nps')), boxes.nps),
      h('figure', {}, h('figcaption', {}, t('trend_volume')), boxes.volume)),
    h('div', { class: 'two' },
      h('section', {}, h('h3', {}, t('topics')), topicsBox),
      h('section', {}, h('h3', {}, t('key_experiences')), driversBox)),
    h('section', {}, h('h3', {}, quadrantTitle()), quadrantBox),
    h('section', {}, h('h3', {}, t('verbatims')), verbatimBox));
  if (!touchpoint) return () => {};
  const trend = Object.fromEntries(Object.entries(boxes).map(([k, el]) => [k, chart(el, t(`trend_${k}`))]));
  const topicsChart = chart(topicsBox, t('topics'));
  const quadrantChart = chart(quadrantBox, quadrantTitle());
  let fetched = [];
  let shownRows = [];
  let byMentions = [];
  let driversSpan = {};
  // A click anywhere in a trend's column opens that window's comments (a point is a few pixels
  // wide); a click on a topic's row opens that topic's.
  const category = (instance, e, axis) => {
    if (!instance.containPixel('grid', [e.offsetX, e.offsetY])) return -1;
    return Math.round(instance.convertFromPixel({ gridIndex: 0 }, [e.offsetX, e.offsetY])[axis]);
  };
  for (const instance of Object.values(trend)) {
    instance.getZr().on('click', (e) => {
      const row = shownRows[category(instance, e, 0)];
      if (!row) return;
      // Query rows carry their end; pushed rows their length.
      const end = row.window_end ?? new Date(Date.parse(row.window_start) + row.window_seconds * 1000);
      openDrill({ touchpoint, from: row.window_start, to: end });
    });
  }
  topicsChart.getZr().on('click', (e) => {
    const k = byMentions[category(topicsChart, e, 1)];
    if (k) openDrill({ touchpoint, topic: k.topic, ...driversSpan });
  });

  function drawTrends() {
    const byStart = new Map(fetched.map((r) => [Date.parse(r.window_start), r]));
    if (win === windowLabel(live.windowSeconds)) {
      for (const r of live.series(touchpoint)) byStart.set(Date.parse(r.window_start), r);
    }
    const rows = [...byStart.values()].sort((a, b) => Date.parse(a.window_start) - Date.parse(b.window_start));
    shownRows = rows;
    const x = rows.map((r) => formatTime(r.window_start));
    const line = (name, values, color) => ({
      animation: false, tooltip: { trigger: 'axis', formatter: axisTip }, grid: { left: 45, right: 10, top: 10, bottom: 30 },
      xAxis: { type: 'category', data: x }, yAxis: { type: 'value', scale: true },
      series: [{ name, type: 'line', data: values, symbolSize: 4, connectNulls: true, color }],
    });
    trend.sentiment.setOption(line(t('mean_sentiment'), rows.map((r) => r.mean_sentiment), '#3b6fb6'), true);
    trend.nps.setOption(line(t('nps'), rows.map((r) => r.nps ?? null), '#8c564b'), true);
    trend.volume.setOption({ ...line(t('volume'), [], '#888'),
      series: [{ type: 'bar', name: t('volume'), data: rows.map((r) => r.volume), color: '#7f9cc6' }] }, true);
    trendNote.dataset.rows = rows.length;
  }

  async function loadTrends() {
    const to = new Date();
    const from = new Date(to.getTime() - (RANGES[win] ?? 2 * 3600) * 1000);
    const path = `/v1/scores?touchpoint=${encodeURIComponent(touchpoint)}&window=${win}`
      + `&from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
    try {
      fetched = (await getJson(path)).rows;
      trendNote.replaceChildren();
    } catch (error) {
      fetched = [];
      apiNote(trendNote, '/v1/scores', error);
    }
    drawTrends();
  }

  async function loadDrivers() {
    try {
      const body = await getJson(`/v1/drivers?touchpoint=${encodeURIComponent(touchpoint)}`);
      const items = body.touchpoints.find((x) => x.touchpoint === touchpoint)?.key_experiences ?? [];
      byMentions = [...items].sort((a, b) => a.mentions - b.mentions);
      driversSpan = { from: body.from, to: body.to };
      drawQuadrant(quadrantChart, quadrantBox, body.touchpoints.find((x) => x.touchpoint === touchpoint),
        { topicName, filter: { touchpoint, ...driversSpan }, esc });
      topicsChart.setOption({
        animation: false, tooltip: { trigger: 'axis', formatter: axisTip }, grid: { left: 140, right: 20, top: 10, bottom: 30 },
        xAxis: { type: 'value' }, yAxis: { type: 'category', data: byMentions.map((k) => topicName(k.topic)) },
        series: [{ type: 'bar', name: t('mentions'), data: byMentions.map((k) => ({
          value: k.mentions,
          itemStyle: { color: k.mean_topic_sentiment <= -0.2 ? '#d73027'
            : k.mean_topic_sentiment >= 0.2 ? '#1a9850' : '#bdbdbd' },
        })) }],
      }, true);
      driversBox.replaceChildren(items.length ? h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, [t('rank'), t('topic'), t('mentions'), t('topic_sentiment'),
          t('importance'), t('expectation'), t('gap'), t('impact')].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, items.map((k) => h('tr', {},
          h('td', {}, k.rank ?? '–'), h('th', { scope: 'row', title: k.topic, 'data-topic': k.topic },
            drillLink({ touchpoint, topic: k.topic, ...driversSpan }, topicName(k.topic))),
          h('td', {}, k.mentions),
          h('td', {}, fmt.num(k.mean_topic_sentiment)), h('td', {}, fmt.num(k.importance, 1)),
          h('td', {}, fmt.num(k.expectation, 1)),
          h('td', { class: k.gap < 0 ? 'neg' : '' }, fmt.signed(k.gap, 1)),
          h('td', {}, fmt.signed(k.impact?.impact, 3))))))
        : h('p', { class: 'muted' }, t('no_rows')));
    } catch (error) {
      apiNote(driversBox, '/v1/drivers', error);
    }
  }

  async function loadVerbatims() {
    try {
      const body = await getJson(`/v1/feedback?touchpoint=${encodeURIComponent(touchpoint)}&page_size=12`);
      for (const item of body.items) {
        for (const topic of item.topics) if (topic.name) topicNames.set(topic.id, topic.name);
      }
      verbatimBox.replaceChildren(...(body.items.length ? body.items.map((item) => h('li', {
        class: `verbatim s-${item.sentiment.label}`,
      }, h('p', { class: 'text' }, highlighted(item[item.spans_index] ?? item.text, item.topics)),
      h('p', { class: 'meta' }, formatTime(item.occurred_at), ' · ', item.channel,
        item.stage ? ` · ${item.stage}` : '', ' · ', t(`sentiment_${item.sentiment.label}`),
        item.topics.length ? ` · ${item.topics.map((x) => x.name ?? x.id).join('、')}` : '')))
        : [h('li', { class: 'muted' }, t('no_rows'))]));
    } catch (error) {
      apiNote(verbatimBox, '/v1/feedback', error);
    }
  }

  loadTrends();
  loadVerbatims().then(loadDrivers);
  drawEffort();
  let refresh = null;
  const off = live.onChange((kind, touched) => {
    if (!touched?.has(touchpoint)) return;
    drawTrends();
    drawEffort();
    // Coarser windows, drivers and verbatims come from queries: refresh them at most every 5 s.
    if (!refresh) {
      refresh = setTimeout(() => {
        refresh = null;
        if (win !== windowLabel(live.windowSeconds)) loadTrends();
        loadVerbatims().then(loadDrivers);
      }, 5000);
    }
  });
  return () => { off(); clearTimeout(refresh); };
}

// ---------- Alerts and cases

function duration(ms) {
  const total = Math.round(Math.abs(ms) / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const pad = (n) => String(n).padStart(2, '0');
  return hours ? `${hours}:${pad(minutes)}:${pad(seconds)}` : `${minutes}:${pad(seconds)}`;
}

// The SLA clock counts down to the deadline of the step the case waits for.
function slaClock(c) {
  const due = c.status === 'open' ? c.ack_due_at
    : ['acknowledged', 'in_progress'].includes(c.status) ? c.resolve_due_at : null;
  if (!due) return { text: '–', over: false };
  const left = Date.parse(due) - Date.now();
  return { text: left >= 0 ? t('sla_left', duration(left)) : t('sla_over', duration(left)), over: left < 0 };
}

// The case event records the signed-in principal as its actor (the server takes it from the
// session, never from the request body).
async function caseAction(caseId, action, body) {
  const response = await fetch(`/v1/cases/${encodeURIComponent(caseId)}/${action}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...CSRF },
    body: JSON.stringify(body),
  });
  if (response.status === 401) signedOut();
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(typeof payload.detail === 'string' ? payload.detail : response.statusText);
  return payload;
}

function caseRow(c, onError) {
  const clock = slaClock(c);
  const assignee = h('input', { type: 'text', name: 'assignee', class: 'assignee', size: 8, value: c.assignee ?? '',
    'aria-label': `${t('assignee')} ${c.case_id}` });
  const run = (action, body = {}) => async () => {
    try {
      live.applyCases([await caseAction(c.case_id, action, body)]);
    } catch (error) {
      onError(t('action_failed', error.message));
    }
  };
  const open = !['resolved', 'closed'].includes(c.status) && mayAct();
  return h('tr', { 'data-case-id': c.case_id, 'data-case-state': c.status, class: `sev-${c.severity}` },
    h('td', {}, formatTime(c.opened_at)), h('td', {}, t(`sev_${c.severity}`)),
    h('td', {}, c.touchpoint), h('td', {}, c.rule_id, c.customer_id ? [' · ', customerLink(c.customer_id, c.customer_id)] : null),
    h('td', { class: 'case-state' }, t(`case_${c.status}`)),
    h('td', { class: `sla${clock.over ? ' sla-over' : ''}`, 'data-due': c.status }, clock.text),
    h('td', {}, h('div', { class: 'case-actions' },
      c.status === 'open' && mayAct() ? h('button', { type: 'button', class: 'ack', onclick: run('ack') }, t('acknowledge')) : null,
      open ? assignee : c.assignee ?? '',
      open ? h('button', { type: 'button', class: 'assign',
        onclick: () => run('assign', { assignee: assignee.value.trim() || 'dashboard' })() }, t('assign')) : null,
      open ? h('button', { type: 'button', class: 'resolve', onclick: run('resolve') }, t('resolve')) : null)));
}

function renderAlerts(view) {
  const feed = h('tbody', { id: 'alert-feed' });
  const cases = h('tbody', { id: 'cases' });
  const note = h('p', { class: 'muted', id: 'cases-note', role: 'status' },
    mayAct() ? t('acting_as', session?.principal?.name ?? '') : t('read_only'));
  view.append(
    h('h2', { class: 'section' }, t('cases')), callbackKpis(getJson), note,
    h('div', { class: 'scroll' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, [t('opened_at'), t('severity'), t('touchpoint'), t('rule'),
        t('status'), t('sla'), ''].map((c) => h('th', { scope: 'col' }, c)))),
      cases)),
    h('h2', { class: 'section' }, t('alerts_feed')),
    h('div', { class: 'scroll' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, [t('fired_at'), t('severity'), t('touchpoint'), t('rule'),
        t('value'), t('status'), t('message')].map((c) => h('th', { scope: 'col' }, c)))),
      feed)));
  const drawAlerts = () => {
    const rows = [...live.alerts.values()].sort((a, b) => Date.parse(b.fired_at) - Date.parse(a.fired_at));
    feed.replaceChildren(...rows.map((a) => h('tr', {
      class: `sev-${a.severity}`, 'data-alert-id': a.alert_id, 'data-status': a.status,
    }, h('td', {}, formatTime(a.fired_at)), h('td', {}, t(`sev_${a.severity}`)),
    h('td', {}, h('a', { href: `#/touchpoint/${encodeURIComponent(a.touchpoint)}` }, a.touchpoint)),
    h('td', {}, a.rule_id), h('td', {}, `${a.metric} ${a.operator ?? ''} ${fmt.num(a.threshold)}: ${fmt.num(a.value)}`),
    h('td', {}, t(`status_${a.status}`)),
    h('td', { class: 'wrap' }, a.message, ' ', alertLinks(a), explainPanel(a.explanation, topicName)))));
  };
  const drawCases = () => {
    // Redraws keep what someone is typing and where the keyboard focus is.
    const typed = new Map([...cases.querySelectorAll('tr[data-case-id] input')]
      .map((input) => [input.closest('tr').dataset.caseId, input.value]));
    const active = document.activeElement;
    const activeCase = cases.contains(active) ? active.closest('tr').dataset.caseId : null;
    const activeKind = activeCase ? (active.className || active.tagName.toLowerCase()) : null;
    const rows = [...live.cases.values()].sort((a, b) => Date.parse(b.opened_at) - Date.parse(a.opened_at));
    cases.replaceChildren(...(rows.length ? rows.map((c) => caseRow(c, (m) => { note.textContent = m; }))
      : [h('tr', {}, h('td', { colspan: 7, class: 'muted' }, t('no_cases')))]));
    for (const [caseId, value] of typed) {
      const input = cases.querySelector(`tr[data-case-id="${CSS.escape(caseId)}"] input`);
      if (input) input.value = value;
    }
    if (activeCase) {
      const row = cases.querySelector(`tr[data-case-id="${CSS.escape(activeCase)}"]`);
      (row?.querySelector(`.${CSS.escape(activeKind)}`) ?? row?.querySelector('button, input'))?.focus();
    }
  };
  drawAlerts();
  drawCases();
  getJson('/v1/cases?limit=200').then((rows) => live.applyCases(rows)).catch((error) => {
    note.textContent = [404, 405].includes(error.status) ? t('cases_missing') : error.message;
  });
  const tick = setInterval(() => {
    for (const row of cases.querySelectorAll('tr[data-case-id]')) {
      const c = live.cases.get(row.dataset.caseId);
      const clock = slaClock(c);
      const cell = row.querySelector('.sla');
      cell.textContent = clock.text;
      cell.classList.toggle('sla-over', clock.over);
    }
  }, 1000);
  const off = live.onChange((kind) => {
    if (kind === 'cases' || kind === 'snapshot') drawCases();
    if (kind !== 'scores' && kind !== 'cases') drawAlerts();
  });
  return () => { off(); clearInterval(tick); };
}

// ---------- shell

const ROUTES = {
  overview: renderOverview,
  journey: (view) => renderJourney(view, { live, chart, getJson, esc }),
  touchpoint: renderDetail,
  alerts: renderAlerts,
  feedback: (view, arg) => renderFeedback(view, arg, { getJson, topicName }),
  segments: (view) => renderDimensions(view, getJson),
  agents: (view) => renderAgents(view, getJson),
  customer: (view, id) => renderCustomer(view, id, { getJson, topicName }),
  emerging: (view, end) => renderEmerging(view, end, { getJson, mayAct, headers: CSRF }),
};

function route() {
  const [, name = 'overview', arg] = location.hash.split('?')[0].split('/');
  const key = ROUTES[name] ? name : 'overview';
  teardown();
  disposeCharts();
  const view = document.getElementById('view');
  view.replaceChildren();
  view.dataset.view = key;
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.route === key) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  teardown = ROUTES[key](view, arg ? decodeURIComponent(arg) : undefined) || (() => {});
}

// ---------- sign-in

const mayAct = () => Boolean(session?.principal?.roles?.includes('operator'));

function showWho() {
  const who = document.getElementById('who');
  const out = document.getElementById('signout');
  if (!session) {
    who.textContent = '';
    out.hidden = true;
    return;
  }
  const p = session.principal;
  who.textContent = session.auth === 'open' ? t('open_mode')
    : `${p.name} · ${p.role ? t(`role_${p.role}`) : t('no_role')}`;
  who.title = session.auth === 'open' ? t('open_mode_hint') : (p.roles ?? []).join(', ');
  out.hidden = session.auth === 'open';
}

// The session ended (or never began): leave the live page for the sign-in form.
function signedOut() {
  if (!session) return;
  session = null;
  if (source) source.close();
  renderLogin();
  // Forget what the last principal could see before someone else signs in on this page.
  live.cases.clear();
  live.reset({ window_seconds: live.windowSeconds, scores: [], alerts: [] });
}

function renderLogin(message = '') {
  teardown();
  teardown = () => {};
  disposeCharts();
  showWho();
  const view = document.getElementById('view');
  view.dataset.view = 'login';
  const secret = h('input', { type: 'password', id: 'credential', name: 'credential',
    autocomplete: 'off', required: true, size: 40 });
  const note = h('p', { id: 'login-note', role: 'alert', class: 'muted' }, message);
  const form = h('form', { id: 'login', class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    const response = await fetch('/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...CSRF },
      body: JSON.stringify({ credential: secret.value.trim() }),
    });
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) {
      note.textContent = t('login_failed', typeof payload.detail === 'string' ? payload.detail : response.statusText);
      return;
    }
    secret.value = '';
    begin();
  } },
  h('h2', { class: 'section' }, t('login_title')),
  h('p', { class: 'muted' }, t('login_hint')),
  h('label', { for: 'credential' }, t('login_credential')), ' ', secret, ' ',
  h('button', { type: 'submit' }, t('login_submit')), note);
  view.replaceChildren(form);
  secret.focus();
}

async function signOut() {
  await fetch('/auth/logout', { method: 'POST', headers: CSRF }).catch(() => {});
  signedOut();
}

// Ask who is signed in; then the live page, or the sign-in form.
async function begin() {
  const response = await fetch('/auth/session', { headers: { accept: 'application/json' } })
    .catch(() => null);
  if (!response || !response.ok) {
    session = null;
    renderLogin(response && response.status !== 401 ? `${response.status}` : '');
    return;
  }
  session = await response.json();
  showWho();
  await Promise.all([loadCatalogue(), loadTaxonomy()]);
  route();
  connect();
}

// Metric labels, units and formulas; without them the page still runs, naming metrics by id.
async function loadCatalogue() {
  try {
    const body = await getJson('/v1/metrics');
    setCatalogue(body.metrics);
    setMetricLabels(body.metrics);
  } catch (error) {
    console.warn('metric catalogue unavailable', error);
  }
}

// Topic display names for every view (drivers, topic charts), not only those of the newest
// comments; without them topics are named by id.
async function loadTaxonomy() {
  try {
    const body = await getJson('/v1/taxonomy');
    for (const topic of body.topics) topicNames.set(topic.id, topic.name);
  } catch (error) {
    console.warn('taxonomy unavailable', error);
  }
}

function shell() {
  document.title = t('title');
  const out = document.getElementById('signout');
  out.textContent = t('sign_out');
  showWho();
  const toggle = document.getElementById('lang');
  toggle.textContent = t('lang_toggle');
  toggle.setAttribute('aria-label', t('lang_toggle_label'));
  document.getElementById('brand').textContent = t('title');
  for (const link of document.querySelectorAll('nav a')) link.textContent = t(`nav_${link.dataset.route}`);
  const status = document.getElementById('conn');
  if (status.dataset.state) status.textContent = t(status.dataset.state);
}

function start() {
  setLang(currentLang());
  document.getElementById('lang').addEventListener('click', () => {
    setLang(currentLang() === 'zh' ? 'en' : 'zh');
    shell();
    if (session) route(); else renderLogin();
  });
  document.getElementById('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', () => { if (session) route(); });
  shell();
  live.onChange((kind) => {
    // A snapshot can bring the first touchpoints to a detail page opened before any data.
    if (kind === 'snapshot' && document.getElementById('view').dataset.view === 'touchpoint') route();
  });
  begin();
}

start();
