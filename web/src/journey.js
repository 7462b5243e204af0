// The journey map: journey stage x touchpoint heat map of a chosen metric, live (the pushed
// last 15 windows) or over any time range (GET /v1/journey), touchpoints left to right in the
// configured journey order (VOC_JOURNEY_ORDER). A cell opens its comments (drill.js).

import { currentLang, t } from './i18n.js';
import { LIVE_WINDOWS, STAGES, catalogue } from './live.js';
import { el } from './dom.js';
import { metricFilter, openDrill } from './drill.js';

// The experience score (0-10, the tiles' headline), then every metric of the catalogue
// (CES and complaint rate among them).
const EXPERIENCE = { name: 'experience', unit: 'score', minimum: 0, maximum: 10, lower_is_better: false };
const HOUR = 3600e3;
const RANGES = { live: null, '1h': HOUR, '24h': 24 * HOUR, '7d': 7 * 24 * HOUR, '30d': 30 * 24 * HOUR, custom: null };

const WORDS = {
  zh: { range: '时间范围', live: '实时（最近 15 个窗口）', '1h': '最近 1 小时', '24h': '最近 24 小时',
    '7d': '最近 7 天', '30d': '最近 30 天', custom: '自定义', from: '从', to: '到', apply: '应用' },
  en: { range: 'Range', live: 'Live (last 15 windows)', '1h': 'Last hour', '24h': 'Last 24 hours',
    '7d': 'Last 7 days', '30d': 'Last 30 days', custom: 'Custom', from: 'From', to: 'To', apply: 'Apply' },
};
const word = (key) => (WORDS[currentLang()] ?? WORDS.zh)[key] ?? key;

// A journey cell's value as shown: shares as percentages, counts whole, the rest to 0.1.
function cellValue(info, value) {
  return Number(value.toFixed(info.unit === 'share' ? 3 : info.unit === 'count' ? 0 : 1));
}

// <input type=datetime-local> holds local time without an offset.
const localInput = (date) => new Date(date.getTime() - date.getTimezoneOffset() * 60e3)
  .toISOString().slice(0, 16);

// ``deps``: the page's live state, chart factory, fetch and tooltip escaping.
export function renderJourney(view, { live, chart, getJson, esc }) {
  const metrics = [EXPERIENCE, ...catalogue.metrics];
  let info = metrics.find((m) => m.name === sessionStorage.getItem('tingjian.journey')) ?? EXPERIENCE;
  let range = sessionStorage.getItem('tingjian.journey.range') ?? 'live';
  if (!(range in RANGES)) range = 'live';
  let order = [];
  let answer = null; // the /v1/journey answer shown outside live mode
  let span = null; // [from, to) of what is shown
  let stopped = false;

  const select = el('select', { id: 'journey-metric', onchange: (e) => {
    info = metrics.find((m) => m.name === e.target.value) ?? EXPERIENCE;
    sessionStorage.setItem('tingjian.journey', info.name);
    draw();
  } }, metrics.map((m) => el('option', { value: m.name, selected: m === info }, t(m.name))));
  const now = new Date();
  const fromInput = el('input', { type: 'datetime-local', id: 'journey-from',
    value: localInput(new Date(now.getTime() - 7 * 24 * HOUR)) });
  const toInput = el('input', { type: 'datetime-local', id: 'journey-to', value: localInput(now) });
  const custom = el('span', { id: 'journey-custom', hidden: range !== 'custom' },
    el('label', { class: 'control' }, `${word('from')} `, fromInput),
    el('label', { class: 'control' }, `${word('to')} `, toInput),
    el('button', { type: 'button', id: 'journey-apply', onclick: () => load() }, word('apply')));
  const ranges = el('select', { id: 'journey-range', onchange: (e) => {
    range = e.target.value;
    sessionStorage.setItem('tingjian.journey.range', range);
    custom.hidden = range !== 'custom';
    if (range !== 'custom') load();
  } }, Object.keys(RANGES).map((r) => el('option', { value: r, selected: r === range }, word(r))));
  const note = el('p', { class: 'muted', id: 'journey-note', role: 'status' });
  const empty = el('p', { class: 'muted', id: 'journey-empty', hidden: true }, t('journey_empty'));
  const box = el('div', { class: 'chart heat', id: 'journey-chart' });
  view.append(el('h2', { class: 'section' }, t('journey_title')),
    el('div', { class: 'controls' },
      el('label', { class: 'control' }, `${word('range')} `, ranges), custom,
      el('label', { class: 'control' }, `${t('journey_metric')} `, select)),
    note, empty, box);
  const heat = chart(box, t('journey_title'));
  let touchpoints = [];
  heat.on('click', (p) => {
    if (!span) return;
    openDrill({ touchpoint: touchpoints[p.value[0]], stage: STAGES[p.value[1]],
      from: span[0], to: span[1], ...metricFilter(info.name) });
  });

  // Live: the pushed windows' figures, ordered as configured. Otherwise: the range's cells.
  function values() {
    if (range === 'live') {
      const known = live.touchpoints();
      touchpoints = [...order.filter((tp) => known.includes(tp)), ...known.filter((tp) => !order.includes(tp))];
      span = [new Date(Date.now() - LIVE_WINDOWS * live.windowSeconds * 1000), new Date()];
      return touchpoints.flatMap((tp) => STAGES.map((stage) => [tp, stage, live.summary(tp, stage)]));
    }
    if (!answer) return [];
    touchpoints = answer.touchpoints;
    return answer.cells.map((c) => [c.touchpoint, c.stage,
      { ...c.metrics, volume: c.volume, experience: c.experience }]);
  }

  function draw() {
    const data = [];
    let max = 0;
    for (const [tp, stage, s] of values()) {
      const value = s[info.name];
      if (value === null || value === undefined || !s.volume) continue;
      data.push([touchpoints.indexOf(tp), STAGES.indexOf(stage), cellValue(info, value)]);
      max = Math.max(max, Math.abs(value));
    }
    box.dataset.cells = String(data.length);
    box.dataset.touchpoints = touchpoints.join(',');
    empty.hidden = data.length > 0;
    const lowIsGood = info.lower_is_better;
    const bounds = info.maximum === null ? [0, Math.max(1, max)] : [info.minimum, info.maximum];
    heat.setOption({
      tooltip: { formatter: (p) => `${esc(t(`stage_${STAGES[p.value[1]]}`))} · ${esc(touchpoints[p.value[0]])}: ${esc(p.value[2])}` },
      grid: { left: 70, right: 20, top: 10, bottom: 80 },
      xAxis: { type: 'category', data: touchpoints, splitArea: { show: true } },
      yAxis: { type: 'category', inverse: true, data: STAGES.map((s) => t(`stage_${s}`)), splitArea: { show: true } },
      visualMap: {
        min: bounds[0], max: bounds[1], calculable: true, orient: 'horizontal', left: 'center', bottom: 0,
        inRange: { color: lowIsGood ? ['#1a9850', '#fee08b', '#d73027'] : ['#d73027', '#fee08b', '#1a9850'] },
      },
      series: [{ type: 'heatmap', data, label: { show: true,
        formatter: (p) => (info.unit === 'share' ? `${(100 * p.value[2]).toFixed(1)}%` : String(p.value[2])) } }],
    }, true);
  }

  async function load() {
    const to = range === 'custom' ? new Date(toInput.value) : new Date();
    const from = range === 'live' ? new Date(to.getTime() - LIVE_WINDOWS * live.windowSeconds * 1000)
      : range === 'custom' ? new Date(fromInput.value) : new Date(to.getTime() - RANGES[range]);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) return;
    const path = `/v1/journey?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
    try {
      const body = await getJson(path);
      if (stopped) return;
      order = body.touchpoints;
      answer = range === 'live' ? null : body;
      span = [new Date(body.from), new Date(body.to)];
      note.textContent = '';
      box.dataset.range = range;
    } catch (error) {
      if (stopped) return;
      answer = null;
      note.textContent = `/v1/journey: ${error.message}`;
    }
    draw();
  }

  draw();
  load();
  const off = live.onChange(() => { if (range === 'live') draw(); });
  return () => { stopped = true; off(); };
}
